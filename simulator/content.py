"""Pages and blog posts: shared rules for reading, creating, updating and deleting content.

Route modules (:mod:`simulator.pages`, :mod:`simulator.blogposts`) bind these to URLs.
Visibility: content in a space the caller may not read is 404; a draft is visible to its
author only; trashed and deleted content appears only when ``status`` asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.api import Ctx, Reply
from simulator.bodies import parse_write_body
from simulator.errors import ApiError, bad_body, bad_param, forbidden, not_found, version_conflict
from simulator.pagination import SortValue, paginate
from simulator.params import BODY_FORMATS_BULK, BODY_FORMATS_SINGLE, path_id, sort_key
from simulator.store import Content, Revision, Space
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


def _space_for(ctx: Ctx, space_id: str, needed: str = "read") -> Space:
    space = ctx.sim.store.spaces.get(space_id)
    if space is None or not ctx.sim.store.can(ctx.me, space, "read"):
        raise not_found("space")
    if needed != "read" and not ctx.sim.store.can(ctx.me, space, needed):  # type: ignore[arg-type]
        raise forbidden(f"You do not have permission to {needed} content in this space.")
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


def _require(body: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_body("The request body must be a JSON object.")
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise bad_body(f"Missing required field(s): {', '.join(missing)}.")
    return body


def _duplicate_title(ctx: Ctx, kind: str, space_id: str, title: str, other: str | None) -> None:
    for c in ctx.sim.store.contents.values():
        if (
            c.type == kind
            and c.space_id == space_id
            and c.status == "current"
            and c.title == title
            and c.id != other
        ):
            raise bad_body(f"A {NOUN[kind]} with this title already exists in the space.")


def _parent(ctx: Ctx, space: Space, body: dict[str, Any]) -> str | None:
    parent_id = body.get("parentId")
    root_level = ctx.query.boolean("root-level")
    if parent_id is None:
        return None if root_level else space.homepage_id
    if root_level:
        raise bad_param("root-level", "parentId may not be given with root-level=true.")
    parent = ctx.sim.store.contents.get(str(parent_id))
    if parent is None or parent.type != "page" or parent.space_id != space.id:
        raise not_found("parent page")
    return parent.id


def create(ctx: Ctx, kind: str) -> Reply:
    body = _require(ctx.body, ("spaceId",))
    status = body.get("status", "current")
    if status not in ("current", "draft"):
        raise bad_body("status must be current or draft.")
    title = body.get("title") or ""
    if status == "current" and not title:
        raise bad_body("title is required unless the status is draft.")
    space = _space_for(ctx, str(body["spaceId"]), "write")
    if status == "current":
        _duplicate_title(ctx, kind, space.id, title, None)
    parsed = parse_write_body(body.get("body"), required=False) or ("storage", "")
    store = ctx.sim.store
    now = ctx.sim.clock.iso()
    item = Content(
        id=store.new_id(),
        type=kind,
        space_id=space.id,
        status=status,
        author_id=ctx.me,
        created_at=now,
        owner_id=ctx.me if kind == "page" else None,
        revisions=[Revision(1, ctx.me, now, "", False, title, parsed[0], parsed[1])],
    )
    if kind == "page":
        item.parent_id = _parent(ctx, space, body)
        item.subtype = body.get("subtype") if body.get("subtype") == "live" else None
        item.position = sum(1 for c in store.contents.values() if c.parent_id == item.parent_id)
    store.contents[item.id] = item
    if status == "current":
        ctx.sim.emit(f"{EVENT_PREFIX[kind]}_created", kind, item.id, ctx.me)
    return Reply(content_view(store, item, formats=[parsed[0]], base=ctx.base))


def _version_number(body: dict[str, Any]) -> int | None:
    version = body.get("version")
    if not isinstance(version, dict):
        raise bad_body("version must be an object with a number.")
    number = version.get("number")
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, int):
        raise bad_body("version.number must be an integer.")
    return number


def update(ctx: Ctx, kind: str) -> Reply:
    body = _require(ctx.body, ("id", "status", "title", "version"))
    if "body" not in body:
        raise bad_body("Missing required field(s): body.")
    if str(body["id"]) != ctx.params["id"]:
        raise bad_body("The id in the body does not match the id in the path.")
    item = find(ctx, kind, ctx.params["id"], ["current", "archived", "draft", "trashed", "deleted"])
    space = _space_for(ctx, item.space_id, "write")
    status = body["status"]
    if status not in ("current", "draft"):
        raise bad_body("status must be current or draft.")
    if body.get("spaceId") not in (None, item.space_id):
        raise bad_body("Moving content to a different space is not supported.")
    number = _version_number(body)
    message = str((body.get("version") or {}).get("message") or "")
    store = ctx.sim.store
    now = ctx.sim.clock.iso()
    prefix = EVENT_PREFIX[kind]
    if item.status in ("trashed", "deleted") and status == "current":
        item.status = "current"  # restoration changes the status only
        ctx.sim.emit(f"{prefix}_restored", kind, item.id, ctx.me)
        return Reply(content_view(store, item, formats=[], base=ctx.base))
    parsed = parse_write_body(body["body"], required=True)
    assert parsed is not None
    title = str(body["title"])
    rev_args = (ctx.me, now, message, False, title, parsed[0], parsed[1])
    if status == "draft":
        if number != 1:
            raise version_conflict(NOUN[kind], item.current.number, number)
        if item.status == "draft":
            item.revisions = [Revision(1, *rev_args)]
        else:
            item.draft = Revision(1, *rev_args)
        return Reply(
            content_view(
                store, item, formats=[parsed[0]], rev=Revision(1, *rev_args), base=ctx.base
            )
            | {"status": "draft"}
        )
    first_publish = item.status == "draft"
    expected = 1 if first_publish else item.current.number + 1
    if number != expected:
        raise version_conflict(NOUN[kind], item.current.number, number)
    _duplicate_title(ctx, kind, space.id, title, item.id)
    if kind == "page":
        _move_and_own(ctx, item, space, body)
    new_rev = Revision(expected, *rev_args)
    item.revisions = [new_rev] if first_publish else [*item.revisions, new_rev]
    item.status, item.draft = "current", None
    if first_publish:
        ctx.sim.emit(f"{prefix}_created", kind, item.id, ctx.me)
    else:
        ctx.sim.emit(f"{prefix}_updated", kind, item.id, ctx.me, updateTrigger="edit_page")
    return Reply(content_view(store, item, formats=[parsed[0]], base=ctx.base))


def _move_and_own(ctx: Ctx, item: Content, space: Space, body: dict[str, Any]) -> None:
    store = ctx.sim.store
    parent_id = body.get("parentId")
    if parent_id is not None and str(parent_id) != item.parent_id:
        parent = store.contents.get(str(parent_id))
        if parent is None or parent.type != "page" or parent.space_id != space.id:
            raise not_found("parent page")
        if parent.id == item.id or item in store.ancestors(parent):
            raise bad_body("A page cannot be moved under itself or its descendants.")
        item.parent_id = parent.id
    owner = body.get("ownerId")
    if owner is not None and owner != item.owner_id:
        if owner not in store.users:
            raise bad_body("ownerId is not a known user.")
        item.last_owner_id, item.owner_id = item.owner_id, str(owner)


def delete(ctx: Ctx, kind: str) -> Reply:
    item = find(ctx, kind, ctx.params["id"], ["current", "archived", "draft", "trashed"])
    space = _space_for(ctx, item.space_id, "write")
    store = ctx.sim.store
    prefix = EVENT_PREFIX[kind]
    if ctx.query.boolean("draft"):
        if item.status != "draft":
            raise bad_param("draft", f"The {NOUN[kind]} is not a draft.")
        del store.contents[item.id]
    elif ctx.query.boolean("purge"):
        if item.status != "trashed":
            raise bad_param("purge", f"Only a trashed {NOUN[kind]} can be purged.")
        if not store.can(ctx.me, space, "admin"):
            raise forbidden("Purging needs permission to administer the space.")
        item.status = "deleted"
        item.revisions = [item.current]
        ctx.sim.emit(f"{prefix}_removed", kind, item.id, ctx.me)
    elif item.status == "trashed":
        raise ApiError(
            400,
            "INVALID_REQUEST_PARAMETER",
            f"The {NOUN[kind]} is already in the trash; purge it with purge=true.",
        )
    else:
        item.status = "trashed"
        ctx.sim.emit(f"{prefix}_trashed", kind, item.id, ctx.me)
    return Reply(None, status=204, objects=0)


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
