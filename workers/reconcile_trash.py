"""Trash changes between two sweeps: pages trashed, restored or purged whose webhooks never came.

CQL search returns current content only, and trashing does not change a page's version or
modification time, so the CQL sweep cannot see it. Instead each completed periodic sweep lists
the trash (v2 ``GET /pages?status=trashed``) and compares it with the list the previous sweep
kept: a page that entered gives ``page.trashed``, one that left gives ``page.restored`` (it is
current again) or ``page.deleted`` (purged). The first sweep of a tenant only records the list.
Event ids carry the page's version, as the webhooks' do, so delivered changes are not repeated.
"""

from __future__ import annotations

from app.atlassian.events import Event, event_id
from app.confluence.client import ConfluenceClient
from app.queue import EventQueue
from app.reconcile_plan import left_trash_type, trash_entered, trash_left, trash_member
from app.reconcile_state import ReconcileState
from workers.reconcile_client import BULK_PAGE_SIZE


async def trash_changes(
    client: ConfluenceClient, state: ReconcileState, queue: EventQueue, tenant: str, now: int
) -> dict[str, int]:
    """Pages trashed, restored or purged since the last sweep (their webhooks never came)."""
    members = {
        trash_member(page.id, page.version_number)
        async for page in client.iter_pages(status=["trashed"], limit=BULK_PAGE_SIZE)
        if page.version is not None
    }
    before = await state.trash(tenant)
    counts = {"trashed": 0, "restored": 0, "deleted": 0, "enqueued": 0}
    if before is None:
        await state.set_trash(tenant, members)
        return counts
    changes = [("page.trashed", cid, v) for cid, v in trash_entered(before, members)]
    left = trash_left(before, members)
    statuses: dict[str, str] = {}
    for start in range(0, len(left), BULK_PAGE_SIZE):
        chunk = [cid for cid, _ in left[start : start + BULK_PAGE_SIZE]]
        statuses |= {
            page.id: page.status
            async for page in client.iter_pages(
                ids=chunk, status=["current", "archived", "deleted", "trashed"], limit=250
            )
        }
    # restored, edited and trashed again: the CQL sweep saw the edit, the trash list the rest
    changes += [
        (left_trash_type(statuses.get(cid)), cid, v)
        for cid, v in left
        if statuses.get(cid) != "trashed"
    ]
    seen = await state.seen(tenant, [((t,), cid, [v]) for t, cid, v in changes])
    for (type_, cid, v), known in zip(changes, seen, strict=True):
        counts[type_.removeprefix("page.")] += 1
        if not known:
            event = Event(
                id=event_id(tenant, type_, cid, v, now),
                source="reconcile",
                tenant=tenant,
                type=type_,
                content_id=cid,
                content_type="page",
                timestamp=now,
                version=v,
            )
            counts["enqueued"] += int(await queue.put(event))
    await state.set_trash(tenant, members)
    return counts
