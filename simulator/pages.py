"""Routes of pages and blog posts under ``/wiki/api/v2``."""

from __future__ import annotations

from simulator import content, edits
from simulator.api import Ctx, Reply, operation
from simulator.pagination import paginate
from simulator.params import Query, sort_key
from simulator.spaces import find_space

PAGE_STATUSES = ("current", "archived", "deleted", "trashed")
BLOG_STATUSES = ("current", "deleted", "trashed")
PAGE_SORTS = ("id", "created-date", "modified-date", "title")
BLOG_SORTS = ("id", "created-date", "modified-date")
CHILD_SORTS = ("created-date", "id", "child-position", "modified-date")


def _id_filter(query: Query, name: str, max_items: int) -> set[str] | None:
    values = query.ids(name, max_items)
    return set(values) if values else None


def list_pages(ctx: Ctx) -> Reply:
    return _list(ctx, "page", PAGE_STATUSES, ["current", "archived"], PAGE_SORTS)


def list_blogposts(ctx: Ctx) -> Reply:
    return _list(ctx, "blogpost", BLOG_STATUSES, ["current"], BLOG_SORTS)


def _list(
    ctx: Ctx, kind: str, statuses: tuple[str, ...], default: list[str], sorts: tuple[str, ...]
) -> Reply:
    ids = _id_filter(ctx.query, "id", 250)
    spaces = _id_filter(ctx.query, "space-id", 100)
    subtype = ctx.query.choice("subtype", ("live", "page")) if kind == "page" else None
    items = [
        c
        for c in ctx.sim.store.contents.values()
        if (ids is None or c.id in ids)
        and (spaces is None or c.space_id in spaces)
        and (subtype is None or (c.subtype or "page") == subtype)
    ]
    return content.list_items(ctx, kind, items, default, statuses, sorts)


def pages_in_space(ctx: Ctx) -> Reply:
    space = _visible_space(ctx)
    depth = ctx.query.choice("depth", ("all", "root"), "all")
    items = [
        c
        for c in ctx.sim.store.contents.values()
        if c.space_id == space and (depth == "all" or c.parent_id is None)
    ]
    return content.list_items(
        ctx, "page", items, ["current", "archived"], PAGE_STATUSES, PAGE_SORTS
    )


def blogposts_in_space(ctx: Ctx) -> Reply:
    space = _visible_space(ctx)
    items = [c for c in ctx.sim.store.contents.values() if c.space_id == space]
    return content.list_items(ctx, "blogpost", items, ["current"], BLOG_STATUSES, BLOG_SORTS)


def _visible_space(ctx: Ctx) -> str:
    return find_space(ctx, ctx.params["id"]).id


def children(ctx: Ctx, direct: bool) -> Reply:
    parent = content.find(ctx, "page", ctx.params["id"])
    kids = [
        c
        for c in ctx.sim.store.contents.values()
        if c.parent_id == parent.id
        and c.type == "page"
        and content.visible(ctx, c, ["current", "archived"])
    ]
    field, descending = sort_key(ctx.query, CHILD_SORTS, "child-position")
    page = paginate(
        kids,
        query=ctx.query,
        path=ctx.path,
        order=field,
        value=content.SORTS[field],
        ident=lambda c: c.id,
        descending=descending,
    )
    results = []
    for c in page.items:
        entry = {
            "id": c.id,
            "status": c.status,
            "title": c.title,
            "spaceId": c.space_id,
            "childPosition": c.position,
        }
        if direct:
            entry["type"] = "page"
        results.append(entry)
    return Reply.listing(ctx, results, page)


routes = [
    operation("/pages", list_pages),
    operation("/pages", lambda ctx: edits.create(ctx, "page"), "POST"),
    operation("/pages/{id}", lambda ctx: content.get_one(ctx, "page")),
    operation("/pages/{id}", lambda ctx: edits.update(ctx, "page"), "PUT"),
    operation("/pages/{id}", lambda ctx: edits.delete(ctx, "page"), "DELETE"),
    operation("/pages/{id}/children", lambda ctx: children(ctx, False)),
    operation("/pages/{id}/direct-children", lambda ctx: children(ctx, True)),
    operation("/pages/{id}/versions", lambda ctx: content.versions(ctx, "page")),
    operation("/spaces/{id}/pages", pages_in_space),
    operation("/blogposts", list_blogposts),
    operation("/blogposts", lambda ctx: edits.create(ctx, "blogpost"), "POST"),
    operation("/blogposts/{id}", lambda ctx: content.get_one(ctx, "blogpost")),
    operation("/blogposts/{id}", lambda ctx: edits.update(ctx, "blogpost"), "PUT"),
    operation("/blogposts/{id}", lambda ctx: edits.delete(ctx, "blogpost"), "DELETE"),
    operation("/blogposts/{id}/versions", lambda ctx: content.versions(ctx, "blogpost")),
    operation("/spaces/{id}/blogposts", blogposts_in_space),
]
