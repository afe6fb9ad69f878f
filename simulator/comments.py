"""Routes of footer and inline comments.

Creation answers 201 with a ``Location`` header; page and blog post comment lists hold root
comments only (replies come from ``/{kind}-comments/{id}/children``); deleting is permanent.
An inline comment on a storage page wraps its selection in the page's current version with
``<ac:inline-comment-marker ac:ref="{inlineMarkerRef}">`` (no new version, no event).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.routing import Route

from simulator import content
from simulator.api import Ctx, Reply, operation
from simulator.bodies import parse_write_body, plain_text
from simulator.edits import version_number
from simulator.errors import bad_body, not_found, not_permitted, version_conflict
from simulator.pagination import SortValue, paginate
from simulator.params import BODY_FORMATS_BULK, BODY_FORMATS_SINGLE, path_id, sort_key
from simulator.storage import anchor_text, insert_marker
from simulator.store import Comment, Content, Revision
from simulator.views import comment as comment_view

SORTS: dict[str, Callable[[Comment], SortValue]] = {
    "created-date": lambda c: c.created_at,
    "modified-date": lambda c: c.current.created_at,
}
RESOLUTIONS = ("open", "reopened", "resolved", "dangling")


def _container_visible(ctx: Ctx, item: Comment) -> Content | None:
    container = ctx.sim.store.contents.get(item.container_id)
    if container is None or not content.visible(ctx, container):
        return None
    return container


def _find(ctx: Ctx, kind: str) -> Comment:
    item = ctx.sim.store.comments.get(path_id(ctx.params["comment_id"], "comment-id"))
    if item is None or item.kind != kind or _container_visible(ctx, item) is None:
        raise not_found("comment")
    return item


def _list(ctx: Ctx, items: list[Comment], kind: str) -> Reply:
    statuses = ctx.query.choices(
        "status", ("current", "archived", "trashed", "deleted", "historical", "draft"), ["current"]
    )
    resolutions = (
        ctx.query.choices("resolution-status", RESOLUTIONS, []) if kind == "inline" else []
    )
    chosen = [
        c
        for c in items
        if c.kind == kind
        and c.status in statuses
        and _container_visible(ctx, c) is not None
        and (not resolutions or (c.resolution_status or "open") in resolutions)
    ]
    field, descending = sort_key(ctx.query, tuple(SORTS), "created-date")
    page = paginate(
        chosen,
        query=ctx.query,
        path=ctx.path,
        order=field,
        value=SORTS[field],
        ident=lambda c: c.id,
        descending=descending,
    )
    fmts = content.formats(ctx, BODY_FORMATS_BULK)
    results = [comment_view(ctx.sim.store, c, formats=fmts) for c in page.items]
    return Reply.listing(ctx, results, page)


def on_content(ctx: Ctx, container_kind: str, kind: str) -> Reply:
    item = content.find(ctx, container_kind, ctx.params["id"])
    roots = [
        c
        for c in ctx.sim.store.comments.values()
        if c.container_id == item.id and c.parent_comment_id is None
    ]
    return _list(ctx, roots, kind)


def all_comments(ctx: Ctx, kind: str) -> Reply:
    return _list(ctx, list(ctx.sim.store.comments.values()), kind)


def replies(ctx: Ctx, kind: str) -> Reply:
    ctx.params["comment_id"] = ctx.params["id"]
    parent = _find(ctx, kind)
    return _list(
        ctx, [c for c in ctx.sim.store.comments.values() if c.parent_comment_id == parent.id], kind
    )


def get_comment(ctx: Ctx, kind: str) -> Reply:
    item = _find(ctx, kind)
    rev = item.current
    wanted = ctx.query.integer("version", None, 1)
    if wanted is not None:
        match = [r for r in item.revisions if r.number == wanted]
        if not match:
            raise not_found("version")
        rev = match[0]
    fmts = content.formats(ctx, BODY_FORMATS_SINGLE)
    return Reply(comment_view(ctx.sim.store, item, formats=fmts, base=ctx.base, rev=rev))


def _target(ctx: Ctx, body: dict[str, Any], kind: str) -> tuple[Content, Comment | None]:
    store = ctx.sim.store
    parent_id = body.get("parentCommentId")
    container_ids = [body.get(k) for k in ("pageId", "blogPostId") if body.get(k)]
    if parent_id:
        if container_ids:
            raise bad_body("Give either parentCommentId or the container id, not both.")
        parent = store.comments.get(str(parent_id))
        container = store.contents.get(parent.container_id) if parent else None
        # A reply's parent is a comment of the same kind: replies are listed per kind
        # (/{kind}-comments/{id}/children), and the spec's 404 names a parent comment not found.
        if (
            parent is None
            or parent.kind != kind
            or container is None
            or not content.visible(ctx, container)
        ):
            raise not_found("parent comment")
        return container, parent
    attachment_id = body.get("attachmentId") or body.get("customContentId")
    if attachment_id and not container_ids:
        # The spec allows footer comments on attachments and custom content; the simulator
        # keeps comments on pages and blog posts only, and says so (an unknown one is 404).
        found = store.attachments.get(str(attachment_id))
        holder = store.contents.get(found.container_id) if found else None
        if found is None or holder is None or not content.visible(ctx, holder):
            raise not_found("attachment")
        raise bad_body(
            "Comments on attachments or custom content are not supported by the simulator "
            "(Confluence supports them): comment on a page or blog post."
        )
    if len(container_ids) != 1:
        raise bad_body("Exactly one of pageId, blogPostId or parentCommentId is required.")
    kind = "page" if body.get("pageId") else "blogpost"
    return content.find(ctx, kind, str(container_ids[0]), ["current"]), None


def create(ctx: Ctx, kind: str) -> Reply:
    body = ctx.body
    if not isinstance(body, dict):
        raise bad_body("The request body must be a JSON object.")
    container, parent = _target(ctx, body, kind)
    store = ctx.sim.store
    if not store.can(ctx.me, store.spaces[container.space_id], "write"):
        raise not_permitted("You do not have permission to comment in this space.")
    parsed = parse_write_body(body.get("body"), required=True)
    assert parsed is not None
    now = ctx.sim.clock.iso()
    item = Comment(
        id=store.new_id(),
        kind=kind,
        container_id=container.id,
        container_type=container.type,
        author_id=ctx.me,
        created_at=now,
        revisions=[Revision(1, ctx.me, now, "", False, "", parsed[0], parsed[1])],
        parent_comment_id=parent.id if parent else None,
    )
    if kind == "inline":
        _anchor(item, container, body.get("inlineCommentProperties"), reply=parent is not None)
    store.comments[item.id] = item
    ctx.sim.emit("comment_created", "comment", item.id, ctx.me)
    location = f"{ctx.base}/api/v2/{kind}-comments/{item.id}"
    data = comment_view(store, item, formats=[parsed[0]], base=ctx.base)
    return Reply(data, status=201, headers={"Location": location})


def _anchor(item: Comment, container: Content, props: Any, *, reply: bool) -> None:
    if reply:
        if props:
            raise bad_body("inlineCommentProperties are not allowed on replies.")
        return
    if not isinstance(props, dict) or not isinstance(props.get("textSelection"), str):
        raise bad_body("inlineCommentProperties.textSelection is required.")
    selection = props["textSelection"]
    count = props.get("textSelectionMatchCount")
    index = props.get("textSelectionMatchIndex", 0)
    if not isinstance(count, int) or not isinstance(index, int) or not 0 <= index < count:
        raise bad_body(
            "textSelectionMatchIndex must be at least 0 and below textSelectionMatchCount."
        )
    rev = container.current
    storage = rev.representation == "storage"
    if storage:
        found = len(anchor_text(rev.value).starts(selection))
    else:
        found = plain_text(rev.representation, rev.value).count(selection)
    if not selection or found != count:
        raise bad_body("The text selection does not occur textSelectionMatchCount times.")
    item.text_selection, item.match_count, item.match_index = selection, count, index
    item.marker_ref = str(uuid.uuid4())
    item.resolution_status = "open"
    if storage:
        marked = insert_marker(rev.value, selection, index, item.marker_ref)
        if marked is not None:
            rev.value = marked  # in place: the page keeps its version number


def update(ctx: Ctx, kind: str) -> Reply:
    """Permission, then the body (a malformed one is 400 whatever the version), then version."""
    item = _find(ctx, kind)
    body = ctx.body
    if not isinstance(body, dict) or not isinstance(body.get("version"), dict):
        raise bad_body("version is required.")
    store = ctx.sim.store
    if item.author_id != ctx.me and not store.can(
        ctx.me, store.spaces[store.contents[item.container_id].space_id], "admin"
    ):
        raise not_permitted("Only the author or a space admin can edit a comment.")
    if kind == "inline" and item.resolution_status == "dangling":
        # the spec: "A dangling comment cannot be updated" (its only other error is a 400)
        raise bad_body("A dangling comment cannot be updated.")
    parsed = parse_write_body(body.get("body"), required=True)
    assert parsed is not None
    number = version_number(body)
    if number != item.current.number + 1:
        raise version_conflict("comment", item.current.number, number)
    now = ctx.sim.clock.iso()
    item.revisions.append(
        Revision(
            number,
            ctx.me,
            now,
            str(body["version"].get("message") or ""),
            False,
            "",
            parsed[0],
            parsed[1],
        )
    )
    resolved = body.get("resolved")
    if kind == "inline" and isinstance(resolved, bool):
        # matching the current state (true -> resolved, false -> open/reopened): no change
        already = (item.resolution_status == "resolved") == resolved
        if not already:
            item.resolution_status = "resolved" if resolved else "reopened"
            item.resolution_modifier_id, item.resolution_modified_at = ctx.me, now
    ctx.sim.emit("comment_updated", "comment", item.id, ctx.me)
    return Reply(comment_view(store, item, formats=[parsed[0]], base=ctx.base))


def delete(ctx: Ctx, kind: str) -> Reply:
    item = _find(ctx, kind)
    store = ctx.sim.store
    space = store.spaces[store.contents[item.container_id].space_id]
    if item.author_id != ctx.me and not store.can(ctx.me, space, "admin"):
        raise not_permitted("Only the author or a space admin can delete a comment.")
    ctx.sim.emit("comment_removed", "comment", item.id, ctx.me)
    for reply in [c for c in store.comments.values() if c.parent_comment_id == item.id]:
        del store.comments[reply.id]
    del store.comments[item.id]
    return Reply(None, status=204, objects=0)


def _routes() -> list[Route]:
    out: list[Route] = []
    for kind in ("footer", "inline"):
        base = f"/{kind}-comments"
        out += [
            operation(base, partial(all_comments, kind=kind)),
            operation(base, partial(create, kind=kind), "POST"),
            operation(base + "/{comment_id}", partial(get_comment, kind=kind)),
            operation(base + "/{comment_id}", partial(update, kind=kind), "PUT"),
            operation(base + "/{comment_id}", partial(delete, kind=kind), "DELETE"),
            operation(base + "/{id}/children", partial(replies, kind=kind)),
            operation(
                f"/pages/{{id}}{base}", partial(on_content, container_kind="page", kind=kind)
            ),
            operation(
                f"/blogposts/{{id}}{base}",
                partial(on_content, container_kind="blogpost", kind=kind),
            ),
        ]
    return out


routes = _routes()
