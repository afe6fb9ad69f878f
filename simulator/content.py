"""Pages and blog posts: shared rules for reading, creating, updating and deleting content.

Route modules (:mod:`simulator.pages`, :mod:`simulator.blogposts`) bind these to URLs.
Visibility: content in a space the caller may not read is 404; a draft is visible to its
author only; trashed and deleted content appears only when ``status`` asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.api import Ctx, Reply
from simulator.errors import not_found, not_permitted
from simulator.pagination import SortValue, paginate
from simulator.params import BODY_FORMATS_BULK, BODY_FORMATS_SINGLE, path_id, sort_key
from simulator.store import Content, Space
from simulator.views import content as content_view
from simulator.views import label as label_view
from simulator.views import version as version_view

SORTS: dict[str, Callable[[Content], SortValue]] = {
    "id": lambda c: int(c.id),
    "created-date": lambda c: c.created_at,
    "modified-date": lambda c: c.current.created_at,
    "title": lambda c: c.title.lower(),
    "child-position": lambda c: c.position or 0,
}
EVENT_PREFIX = {"page": "page", "blogpost": "blog"}
NOUN = {"page": "page", "blogpost": "blog post"}


def space_for(ctx: Ctx, space_id: str, needed: str = "read") -> Space:
    space = ctx.sim.store.spaces.get(space_id)
    if space is None or not ctx.sim.store.can(ctx.me, space, "read"):
        raise not_found("space")
    if needed != "read" and not ctx.sim.store.can(ctx.me, space, needed):  # type: ignore[arg-type]
        raise not_permitted(f"You do not have permission to {needed} content in this space.")
    return space


def visible(ctx: Ctx, item: Content, statuses: list[str] | None = None) -> bool:
    store = ctx.sim.store
    space = store.spaces.get(item.space_id)
    if space is None or not store.can(ctx.me, space, "read"):
        return False
    if item.status == "draft" and item.author_id != ctx.me:
        return False
    allowed = statuses if statuses is not None else ["current", "archived", "draft"]
    return item.status in allowed


def find(ctx: Ctx, kind: str, raw_id: str, statuses: list[str] | None = None) -> Content:
    item = ctx.sim.store.contents.get(path_id(raw_id))
    if item is None or item.type != kind or not visible(ctx, item, statuses):
        raise not_found(NOUN[kind])
    return item


def formats(ctx: Ctx, allowed: tuple[str, ...]) -> list[str]:
    chosen = ctx.query.choice("body-format", allowed)
    return [chosen] if chosen else []


def _optional_field(store_items: list[dict[str, Any]], path: str) -> dict[str, Any]:
    return {
        "results": store_items[:50],
        "meta": {"hasMore": len(store_items) > 50},
        "_links": {"self": path},
    }


def get_one(ctx: Ctx, kind: str) -> Reply:
    statuses = ctx.query.choices(
        "status",
        ("current", "archived", "trashed", "deleted", "historical", "draft"),
        ["current", "archived", "draft"],
    )
    item = find(ctx, kind, ctx.params["id"], statuses)
    rev = item.current
    status_override = None
    if ctx.query.boolean("get-draft") and item.draft is not None:
        rev, status_override = item.draft, "draft"
    wanted = ctx.query.integer("version", None, 1)
    if wanted is not None:
        match = [r for r in item.revisions if r.number == wanted]
        if not match:
            raise not_found("version")
        rev = match[0]
        status_override = None if rev is item.current else "historical"
    data = content_view(
        ctx.sim.store,
        item,
        formats=formats(ctx, BODY_FORMATS_SINGLE),
        rev=rev,
        base=ctx.base,
        include_version=ctx.query.boolean("include-version", True),
    )
    if status_override:
        data["status"] = status_override
    if ctx.query.boolean("include-labels"):
        labels = [label_view(ctx.sim.store.labels[i]) for i in item.label_ids]
        data["labels"] = _optional_field(labels, f"{ctx.path}/labels")
    if ctx.query.boolean("include-versions"):
        versions = [version_view(r) for r in reversed(item.revisions)]
        data["versions"] = _optional_field(versions, f"{ctx.path}/versions")
    return Reply(data)


def list_items(
    ctx: Ctx,
    kind: str,
    items: list[Content],
    default_status: list[str],
    status_values: tuple[str, ...],
    sorts: tuple[str, ...],
) -> Reply:
    statuses = ctx.query.choices("status", status_values, default_status)
    title = ctx.query.get("title")
    chosen = [
        c
        for c in items
        if c.type == kind and visible(ctx, c, statuses) and (title is None or c.title == title)
    ]
    field, descending = sort_key(ctx.query, sorts, "id")
    page = paginate(
        chosen,
        query=ctx.query,
        path=ctx.path,
        order=field,
        value=SORTS[field],
        ident=lambda c: c.id,
        descending=descending,
    )
    fmts = formats(ctx, BODY_FORMATS_BULK)
    return Reply.listing(
        ctx, [content_view(ctx.sim.store, c, formats=fmts) for c in page.items], page
    )


def versions(ctx: Ctx, kind: str) -> Reply:
    item = find(ctx, kind, ctx.params["id"])
    fmts = formats(ctx, BODY_FORMATS_BULK)
    max_limit = 50 if fmts else 250
    _, descending = sort_key(ctx.query, ("modified-date",), "-modified-date")
    page = paginate(
        item.revisions,
        query=ctx.query,
        path=ctx.path,
        order="modified-date",
        value=lambda r: r.number,
        ident=lambda r: str(r.number),
        descending=descending,
        max_limit=max_limit,
    )
    key = "page" if kind == "page" else "blogpost"
    results = []
    for rev in page.items:
        entry = version_view(rev)
        entry[key] = {"id": item.id, "title": rev.title}
        if fmts:
            entry[key]["body"] = content_view(ctx.sim.store, item, formats=fmts, rev=rev)["body"]
        results.append(entry)
    return Reply.listing(ctx, results, page)
