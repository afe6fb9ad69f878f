"""``/_sim/act/...``: do what a person would do on the site, as that person.

Each action goes through the same rules and events as the product API, so the app receives the
webhooks a real edit, comment or label would cause.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request

from simulator import comments, edits
from simulator.admin import AdminError, admin, find_user, request_ctx
from simulator.api import site_base
from simulator.demo import random_activity
from simulator.site import Simulator
from simulator.store import Attachment
from simulator.views import content as content_view


def _storage(text: Any) -> dict[str, str]:
    """Storage as given (it starts with ``<``), else a paragraph of the text, escaped."""
    value = str(text or "")
    return {
        "representation": "storage",
        "value": value if value.startswith("<") else f"<p>{html.escape(value, quote=False)}</p>",
    }


async def act_create_page(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, body.get("as"))
    space_id = body.get("spaceId")
    if space_id is None:
        space = sim.store.space_by_key(str(body.get("spaceKey")))
        if space is None:
            raise AdminError(404, "unknown_space", "no space with this key")
        space_id = space.id
    payload = {
        "spaceId": str(space_id),
        "status": body.get("status", "current"),
        "title": body.get("title"),
        "body": _storage(body.get("body")),
        "parentId": body.get("parentId"),
    }
    ctx = request_ctx(request, sim, user, payload)
    return edits.create(ctx, str(body.get("type", "page"))).data


async def act_edit(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, body.get("as"))
    item = sim.store.contents.get(request.path_params["id"])
    if item is None:
        raise AdminError(404, "unknown_content", "no such page or blog post")
    payload = {
        "id": item.id,
        "status": "current",
        "title": body.get("title", item.title),
        "body": _storage(body["body"])
        if "body" in body
        else {"representation": item.current.representation, "value": item.current.value},
        "version": {"number": item.current.number + 1, "message": body.get("message", "")},
    }
    ctx = request_ctx(request, sim, user, payload, id=item.id)
    return edits.update(ctx, item.type).data


async def act_comment(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, body.get("as"))
    payload: dict[str, Any] = {"body": _storage(body.get("body"))}
    for name in ("pageId", "blogPostId", "parentCommentId", "inlineCommentProperties"):
        if body.get(name) is not None:
            payload[name] = body[name]
    parent = sim.store.comments.get(str(body.get("parentCommentId")))
    if parent is not None:
        kind = parent.kind  # a reply is of its parent's kind
    else:
        kind = "inline" if body.get("inlineCommentProperties") else "footer"
    return comments.create(request_ctx(request, sim, user, payload), kind).data


async def act_label(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, body.get("as"))
    item = sim.store.contents.get(str(body["contentId"]))
    space = sim.store.spaces.get(item.space_id) if item else None
    if item is None or space is None or not sim.store.can(user.account_id, space, "write"):
        raise AdminError(404, "unknown_content", "no such content, or the user may not edit it")
    label = sim.store.label_named(str(body["name"]).lower())
    if body.get("remove"):
        if label.id in item.label_ids:
            item.label_ids.remove(label.id)
            sim.emit("label_removed", "label", label.id, user.account_id, contentId=item.id)
    elif label.id not in item.label_ids:
        item.label_ids.append(label.id)
        sim.emit("label_added", "label", label.id, user.account_id, contentId=item.id)
    return {"contentId": item.id, "labels": [sim.store.labels[i].name for i in item.label_ids]}


async def act_attach(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, body.get("as"))
    item = sim.store.contents.get(str(body["contentId"]))
    if item is None:
        raise AdminError(404, "unknown_content", "no such page or blog post")
    att = Attachment(
        id=f"att{sim.store.new_id()}",
        container_id=item.id,
        container_type=item.type,
        title=str(body.get("fileName", "file.txt")),
        media_type=str(body.get("mediaType", "text/plain")),
        file_size=int(body.get("size", 0)),
        author_id=user.account_id,
        created_at=sim.clock.iso(),
    )
    sim.store.attachments[att.id] = att
    sim.emit("attachment_created", "attachment", att.id, user.account_id)
    return {"id": att.id, "contentId": item.id}


async def act_random(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return random_activity(sim, site_base(sim, request))


async def act_page(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, request.query_params.get("as", "admin@example.com"))
    item = sim.store.contents.get(request.path_params["id"])
    if item is None:
        raise AdminError(404, "unknown_content", "no such page")
    ctx = request_ctx(request, sim, user, None)
    return content_view(sim.store, item, formats=["storage"], base=ctx.base)


routes = [
    admin("/act/pages", act_create_page, "POST"),
    admin("/act/pages/{id}", act_page),
    admin("/act/pages/{id}/edit", act_edit, "POST"),
    admin("/act/comments", act_comment, "POST"),
    admin("/act/labels", act_label, "POST"),
    admin("/act/attachments", act_attach, "POST"),
    admin("/act/random", act_random, "POST"),
]
