"""Routes of spaces under ``/wiki/api/v2``; a space the caller may not read is 404."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from simulator.api import Ctx, Reply, operation
from simulator.errors import bad_body, not_found
from simulator.pagination import SortValue, paginate
from simulator.params import path_id, sort_key
from simulator.store import Content, Revision, Space, Store
from simulator.views import space as space_view

SPACE_SORTS: dict[str, Callable[[Space], SortValue]] = {
    "id": lambda s: int(s.id),
    "key": lambda s: s.key,
    "name": lambda s: s.name.lower(),
}
KEY_PATTERN = re.compile(r"^[A-Za-z0-9]{1,255}$")


def find_space(ctx: Ctx, raw_id: str) -> Space:
    space = ctx.sim.store.spaces.get(path_id(raw_id))
    if space is None or not ctx.sim.store.can(ctx.me, space, "read"):
        raise not_found("space")
    return space


def create_space(
    store: Store,
    *,
    key: str,
    name: str,
    author_id: str,
    now: str,
    description: str = "",
    default_access: str = "write",
) -> Space:
    """A space with its homepage, as Confluence creates one (no events for the homepage)."""
    space = Space(
        id=store.new_id(),
        key=key,
        name=name,
        author_id=author_id,
        created_at=now,
        description=description,
        default_access=default_access,
    )
    home = Content(
        id=store.new_id(),
        type="page",
        space_id=space.id,
        status="current",
        author_id=author_id,
        created_at=now,
        owner_id=author_id,
        position=0,
        revisions=[
            Revision(
                1,
                author_id,
                now,
                "",
                False,
                f"{name} Home",
                "storage",
                f"<p>Welcome to {html.escape(name, quote=False)}.</p>",
            )
        ],
    )
    space.homepage_id = home.id
    store.spaces[space.id] = space
    store.contents[home.id] = home
    return space


def list_spaces(ctx: Ctx) -> Reply:
    store = ctx.sim.store
    ids = set(ctx.query.ids("ids", 250))
    keys = set(ctx.query.getlist("keys", 250))
    kind = ctx.query.choice("type", ("global", "personal", "collaboration", "knowledge_base"))
    status = ctx.query.choice("status", ("current", "archived"))
    labels = set(ctx.query.getlist("labels"))
    description_format = ctx.query.choice("description-format", ("plain", "view"))
    chosen = [
        s
        for s in store.spaces.values()
        if store.can(ctx.me, s, "read")
        and (not ids or s.id in ids)
        and (not keys or s.key in keys)
        and (kind is None or s.type == kind)
        and (status is None or s.status == status)
        and (not labels or labels & {store.labels[i].name for i in s.label_ids})
    ]
    field, descending = sort_key(ctx.query, tuple(SPACE_SORTS), "id")
    page = paginate(
        chosen,
        query=ctx.query,
        path=ctx.path,
        order=field,
        value=SPACE_SORTS[field],
        ident=lambda s: s.id,
        descending=descending,
    )
    results = [space_view(store, s, description_format=description_format) for s in page.items]
    return Reply.listing(ctx, results, page)


def get_space(ctx: Ctx) -> Reply:
    space = find_space(ctx, ctx.params["id"])
    description_format = ctx.query.choice("description-format", ("plain", "view"))
    return Reply(
        space_view(ctx.sim.store, space, base=ctx.base, description_format=description_format)
    )


def post_space(ctx: Ctx) -> Reply:
    body = ctx.body
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
        raise bad_body("name is required.")
    key = body.get("key") or body.get("alias")
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise bad_body("key (or alias) is required and must be alphanumeric.")
    store = ctx.sim.store
    if store.space_by_key(key) is not None:
        raise bad_body(f"A space with key {key} already exists.")
    description: Any = body.get("description") or {}
    text = description.get("value", "") if isinstance(description, dict) else ""
    private = bool(body.get("createPrivateSpace"))
    space = create_space(
        store,
        key=key,
        name=body["name"],
        author_id=ctx.me,
        now=ctx.sim.clock.iso(),
        description=str(text),
        default_access="none" if private else "write",
    )
    ctx.sim.emit("space_created", "space", space.id, ctx.me)
    return Reply(space_view(store, space, base=ctx.base), status=201)


routes = [
    operation("/spaces", list_spaces),
    operation("/spaces", post_space, "POST"),
    operation("/spaces/{id}", get_space),
]
