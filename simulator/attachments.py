"""Routes of attachments (v2 reads and deletes; uploads happen through ``/_sim/``)."""

from __future__ import annotations

from collections.abc import Callable

from simulator import content
from simulator.api import Ctx, Reply, operation
from simulator.errors import bad_param, not_found, not_permitted
from simulator.pagination import SortValue, paginate
from simulator.params import path_id, sort_key
from simulator.store import Attachment
from simulator.views import attachment as attachment_view

SORTS: dict[str, Callable[[Attachment], SortValue]] = {
    "created-date": lambda a: a.created_at,
    "modified-date": lambda a: a.created_at,
}
STATUSES = ("current", "archived", "trashed")


def _visible(ctx: Ctx, att: Attachment) -> bool:
    container = ctx.sim.store.contents.get(att.container_id)
    return container is not None and content.visible(ctx, container)


def _list(ctx: Ctx, items: list[Attachment]) -> Reply:
    statuses = ctx.query.choices("status", STATUSES, ["current"])
    media = ctx.query.get("mediaType")
    filename = ctx.query.get("filename")
    chosen = [
        a
        for a in items
        if a.status in statuses
        and _visible(ctx, a)
        and (media is None or a.media_type == media)
        and (filename is None or a.title == filename)
    ]
    field, descending = sort_key(ctx.query, tuple(SORTS), "created-date")
    page = paginate(
        chosen,
        query=ctx.query,
        path=ctx.path,
        order=field,
        value=SORTS[field],
        ident=lambda a: a.id,
        descending=descending,
        default_limit=50,
    )
    return Reply.listing(ctx, [attachment_view(ctx.sim.store, a) for a in page.items], page)


def list_attachments(ctx: Ctx) -> Reply:
    return _list(ctx, list(ctx.sim.store.attachments.values()))


def page_attachments(ctx: Ctx) -> Reply:
    item = content.find(ctx, "page", ctx.params["id"])
    return _list(ctx, [a for a in ctx.sim.store.attachments.values() if a.container_id == item.id])


def _find(ctx: Ctx) -> Attachment:
    raw = path_id(ctx.params["id"], attachment=True)
    att = ctx.sim.store.attachments.get(raw if raw.startswith("att") else f"att{raw}")
    if att is None or att.status == "deleted" or not _visible(ctx, att):
        raise not_found("attachment")
    return att


def get_attachment(ctx: Ctx) -> Reply:
    return Reply(attachment_view(ctx.sim.store, _find(ctx), base=ctx.base))


def delete_attachment(ctx: Ctx) -> Reply:
    att = _find(ctx)
    store = ctx.sim.store
    space = store.spaces[store.contents[att.container_id].space_id]
    if not store.can(ctx.me, space, "write"):
        raise not_permitted()
    if ctx.query.boolean("purge"):
        if att.status != "trashed":
            raise bad_param("purge", "Only a trashed attachment can be purged.")
        att.status = "deleted"
        ctx.sim.emit("attachment_removed", "attachment", att.id, ctx.me)
    else:
        att.status = "trashed"
        ctx.sim.emit("attachment_trashed", "attachment", att.id, ctx.me)
    return Reply(None, status=204, objects=0)


routes = [
    operation("/attachments", list_attachments),
    operation("/attachments/{id}", get_attachment),
    operation("/attachments/{id}", delete_attachment, "DELETE"),
    operation("/pages/{id}/attachments", page_attachments),
]
