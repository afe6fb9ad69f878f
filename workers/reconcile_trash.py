"""Trash changes between two listings: pages trashed, restored or purged whose webhooks never came.

CQL search returns current content only, and trashing does not change a page's version or
modification time, so the CQL sweep cannot see it. Instead the tenant's trash is listed (v2
``GET /pages?status=trashed``, 250 pages a call, 1 point per call plus 1 per page listed) on
its own, slower cadence (``REACTOR_RECONCILE_TRASH_INTERVAL_SECONDS``), and compared with the
previous listing: a page that entered gives ``page.trashed``, one that left gives
``page.restored`` (it is current again) or ``page.deleted`` (purged). The first listing of a
tenant only records the trash. Event ids carry the page's version, as the webhooks' do, so
delivered changes are not repeated.

A listing is resumable and bounded: one run makes at most ``max_calls`` listing calls, saving
the cursor and the pages listed after each; the next run goes on from there. A run the budget
(or a 429) stops resumes at the cursor next time; a listing that fails otherwise is dropped
and the next one starts an interval later. None of this touches the CQL sweep's watermark.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from app.atlassian.events import Event, event_id
from app.confluence.errors import ConfluenceError, RateLimited
from app.errors import Defer
from app.queue import EventQueue
from app.reconcile_plan import left_trash_type, split_members, trash_member
from app.reconcile_state import ReconcileState, TrashProgress
from workers.reconcile_client import BULK_PAGE_SIZE, SweepClient

__all__ = ["MAX_LISTING_CALLS", "TRASH_CALLS_PER_RUN", "TrashReport", "list_trash"]

# Listing calls per run: 2,500 pages, at most 2,510 points.
TRASH_CALLS_PER_RUN = 10
# A listing that needs more calls than this (250,000 pages) is given up as failed (a cursor
# that never ends).
MAX_LISTING_CALLS = 1000


@dataclass
class TrashReport:
    """What one run of a tenant's trash listing did."""

    tenant: str
    calls: int = 0  # listing calls of this run
    listed: int = 0  # pages listed by the listing so far, across its runs
    complete: bool = False  # the listing ended and was compared
    baseline: bool = False  # the first listing: recorded, nothing to compare with
    trashed: int = 0
    restored: int = 0
    deleted: int = 0
    enqueued: int = 0
    yielded: str | None = None  # why it stopped early: budget, 429, calls per run, lock lost
    failed: str | None = None  # the listing was dropped; the next starts an interval later
    busy: bool = False


async def list_trash(
    client: SweepClient,
    state: ReconcileState,
    queue: EventQueue,
    tenant: str,
    now_ms: int,
    held: asyncio.Event,
    *,
    max_calls: int = TRASH_CALLS_PER_RUN,
) -> TrashReport:
    """One run of the tenant's trash listing: a new one, or the one under way resumed."""
    progress = await state.trash_progress(tenant)
    if progress is None:
        progress = TrashProgress(started=now_ms)
        await state.begin_trash(tenant, progress)
    report = TrashReport(tenant, listed=progress.listed)
    try:
        if not progress.done:
            await _list(client, state, tenant, progress, held, max_calls, report)
        if progress.done and held.is_set():
            await _compare(client, state, queue, tenant, now_ms, report)
            await state.finish_trash(tenant, progress)
            report.complete = True
    except Defer as exc:  # no budget now: the next run resumes at the cursor
        report.yielded = exc.reason
    except RateLimited as exc:
        report.yielded = f"rate limited: {exc}"
    except ConfluenceError as exc:
        report.failed = f"{type(exc).__name__}: {exc}"
        await state.abandon_trash(tenant, now_ms)
    return report


async def _list(
    client: SweepClient,
    state: ReconcileState,
    tenant: str,
    progress: TrashProgress,
    held: asyncio.Event,
    max_calls: int,
    report: TrashReport,
) -> None:
    """List pages of the trash from the cursor, at most ``max_calls`` calls."""
    while report.calls < max_calls:
        if progress.calls >= MAX_LISTING_CALLS:
            raise ConfluenceError(f"the trash listing did not end after {progress.calls} calls")
        pages, following = await client.trash_page(progress.cursor, limit=BULK_PAGE_SIZE)
        report.calls += 1
        if not held.is_set():  # another run of the tenant may hold it now: stop here
            report.yielded = "lock lost"
            return
        members = [trash_member(p.id, p.version_number) for p in pages if p.version is not None]
        progress.cursor, progress.done = following, following is None
        progress.listed += len(pages)
        progress.calls += 1
        await state.add_trash_page(tenant, members, progress)
        report.listed = progress.listed
        if progress.done:
            return
    report.yielded = "calls per run"


async def _compare(
    client: SweepClient,
    state: ReconcileState,
    queue: EventQueue,
    tenant: str,
    now_ms: int,
    report: TrashReport,
) -> None:
    """Enqueue what changed since the last listing (nothing for the first)."""
    diff = await state.trash_diff(tenant)
    if diff is None:
        report.baseline = True
        return
    entered, left = diff
    changes = [("page.trashed", cid, v) for cid, v in split_members(entered)]
    gone = split_members(left)
    statuses = await _statuses(client, [cid for cid, _ in gone])
    # restored, edited and trashed again: the CQL sweep saw the edit, the trash list the rest
    changes += [
        (left_trash_type(statuses.get(cid)), cid, v)
        for cid, v in gone
        if statuses.get(cid) != "trashed"
    ]
    kinds = Counter(type_ for type_, _, _ in changes)
    report.trashed, report.restored = kinds["page.trashed"], kinds["page.restored"]
    report.deleted = kinds["page.deleted"]
    seen = await state.seen(tenant, [((t,), cid, [v]) for t, cid, v in changes])
    for (type_, cid, v), known in zip(changes, seen, strict=True):
        if not known:
            report.enqueued += int(await queue.put(_event(tenant, type_, cid, v, now_ms)))


async def _statuses(client: SweepClient, ids: list[str]) -> dict[str, str]:
    """Where pages that left the trash are now (one call per 250; purged ones are absent)."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), BULK_PAGE_SIZE):
        chunk = ids[start : start + BULK_PAGE_SIZE]
        found |= {
            page.id: page.status
            async for page in client.iter_pages(
                ids=chunk, status=["current", "archived", "deleted", "trashed"], limit=250
            )
        }
    return found


def _event(tenant: str, type_: str, content_id: str, version: int, now_ms: int) -> Event:
    return Event(
        id=event_id(tenant, type_, content_id, version, now_ms),
        source="reconcile",
        tenant=tenant,
        type=type_,
        content_id=content_id,
        content_type="page",
        timestamp=now_ms,
        version=version,
    )
