"""Routes of labels: all labels, a page's, a blog post's and a space's."""

from __future__ import annotations

from collections.abc import Callable

from simulator import content
from simulator.api import Ctx, Reply, operation
from simulator.errors import bad_param
from simulator.pagination import SortValue, paginate
from simulator.params import sort_key
from simulator.spaces import find_space
from simulator.store import Label
from simulator.views import label as label_view

LABEL_SORTS: dict[str, Callable[[Label], SortValue]] = {
    "id": lambda lb: int(lb.id),
    "name": lambda lb: lb.name,
    "created-date": lambda lb: int(lb.id),
}
PREFIXES = ("my", "team", "global", "system")
# The spec's enums: a space's labels are filtered by my/team only, and content endpoints take
# one prefix (a string), where /labels takes a list.
SPACE_PREFIXES = ("my", "team")


def _page(
    ctx: Ctx, labels: list[Label], allowed: tuple[str, ...] = PREFIXES, many: bool = True
) -> Reply:
    prefixes = ctx.query.getlist("prefix")
    if not many and len(prefixes) > 1:
        raise bad_param("prefix", "Give one prefix.")
    for prefix in prefixes:
        if prefix not in allowed:
            raise bad_param("prefix", f"Allowed values: {', '.join(allowed)}.")
    chosen = [lb for lb in labels if not prefixes or lb.prefix in prefixes]
    field, descending = sort_key(ctx.query, tuple(LABEL_SORTS), "id")
    page = paginate(
        chosen,
        query=ctx.query,
        path=ctx.path,
        order=field,
        value=LABEL_SORTS[field],
        ident=lambda lb: lb.id,
        descending=descending,
    )
    return Reply.listing(ctx, [label_view(lb) for lb in page.items], page)


def all_labels(ctx: Ctx) -> Reply:
    ids = set(ctx.query.ids("label-id"))
    labels = [lb for lb in ctx.sim.store.labels.values() if not ids or lb.id in ids]
    return _page(ctx, labels)


def content_labels(ctx: Ctx, kind: str) -> Reply:
    item = content.find(ctx, kind, ctx.params["id"])
    return _page(ctx, [ctx.sim.store.labels[i] for i in item.label_ids], many=False)


def space_labels(ctx: Ctx) -> Reply:
    space = find_space(ctx, ctx.params["id"])
    labels = [ctx.sim.store.labels[i] for i in space.label_ids]
    return _page(ctx, labels, allowed=SPACE_PREFIXES, many=False)


routes = [
    operation("/labels", all_labels),
    operation("/pages/{id}/labels", lambda ctx: content_labels(ctx, "page")),
    operation("/blogposts/{id}/labels", lambda ctx: content_labels(ctx, "blogpost")),
    operation("/spaces/{id}/labels", space_labels),
]
