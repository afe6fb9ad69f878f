"""The reconciliation sweep: find the changes webhooks never delivered and enqueue them.

For one tenant, a sweep asks CQL for pages and blog posts modified since the tenant's
watermark (minus an overlap), newest first, following the search cursor. For each page of hits
it reads the current versions in bulk (v2, by id), asks the pipeline's records which versions
it has seen (:class:`~app.reconcile_state.ReconcileState`), and puts a ``source="reconcile"``
event through :meth:`~app.queue.EventQueue.put` for every version never seen. Event ids are
the ones real deliveries get, so a late webhook and a sweep never both run.

Progress is saved after every page of hits: a sweep stopped by its per-run bound, by the
budget (sweeps call Confluence at :attr:`Priority.RECONCILE`, the first to yield) or by a crash
resumes where it stopped. A completed periodic sweep moves the watermark to its own start.
The trash (pages trashed, restored or purged) is compared on its own cadence
(:meth:`Sweeper.trash`, :mod:`workers.reconcile_trash`) and never holds the watermark back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import RedisError

from app.atlassian.events import Event, event_id
from app.budget.hook import BudgetExhausted
from app.confluence.errors import BadRequest
from app.confluence.models import Content, SearchResult
from app.errors import Defer
from app.queue import EventQueue
from app.reconcile_plan import (
    MINUTE_MS,
    build_cql,
    content_kind,
    event_type,
    lower_minutes,
    missing_versions,
    parse_time_ms,
    probe_versions,
    reach_ms,
    window_start,
)
from app.reconcile_state import Progress, ReconcileState
from app.settings import Settings
from workers.reconcile_client import SEARCH_PAGE_SIZE, SweepClient
from workers.reconcile_trash import TRASH_CALLS_PER_RUN, TrashReport, list_trash

__all__ = ["Hit", "SweepClient", "SweepReport", "Sweeper", "Target", "TrashReport"]

Slot = Literal["auto", "manual"]
VERSION_PROBE = 25
# One sweep per tenant at a time; the lock is renewed every quarter of it while a run lasts.
LOCK_SECONDS = 120.0
# A search whose last page came too late for its query's lower bound goes on with a new query
# for what it may have left out; after this many late ends in one run, the run stops unfinished.
LATE_ENDS = 4
# Space keys a sweeper keeps (per site and space id) before it forgets them all: a process
# serving many sites for months must not grow without bound.
MAX_SPACE_KEYS = 50_000


@dataclass(frozen=True, slots=True)
class Hit:
    """A CQL hit with its current state from v2."""

    kind: str
    content: Content
    last_modified: int | None
    space_key: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A tenant to sweep; ``first_ms`` starts its first window (no watermark yet), and no
    window reaches back before ``installed_ms``."""

    tenant: str
    first_ms: int
    installed_ms: int = 0


@dataclass
class SweepReport:
    """What one run of a sweep did; counts are for the whole sweep, across its runs."""

    tenant: str
    slot: str
    since: int
    upper: int | None = None
    items: int = 0
    found: int = 0
    enqueued: int = 0
    pages: int = 0
    complete: bool = False
    yielded: str | None = None  # why the run stopped early (budget, no Forge token)
    retry_in: float = 0.0
    budget: bool = False  # it stopped because the budget had no points for sweeps
    busy: bool = False


ClientFor = Callable[[str], Awaitable[SweepClient]]
Progressed = Callable[[SweepReport], None]


class Sweeper:
    """Sweeps tenants; the client factory and the clock are injected."""

    def __init__(
        self,
        state: ReconcileState,
        queue: EventQueue,
        client_for: ClientFor,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        on_page: Progressed | None = None,
    ) -> None:
        self.state = state
        self.queue = queue
        self.client_for = client_for
        self.settings = settings
        self.clock = clock
        self.on_page = on_page
        self.page_size = SEARCH_PAGE_SIZE
        self.trash_calls = TRASH_CALLS_PER_RUN  # trash listing calls per run
        # (tenant, space id) -> space key. Space ids are stable, keys rarely change; each site
        # numbers its spaces on its own, so the same id names different spaces on two sites.
        self._space_keys: dict[tuple[str, str], str] = {}

    def _now(self) -> int:
        return int(self.clock() * 1000)

    async def run(
        self,
        target: Target,
        *,
        slot: Slot = "auto",
        since_ms: int | None = None,
        max_items: int | None = None,
    ) -> SweepReport:
        """One run of the tenant's sweep: a new one, or the unfinished one resumed."""
        async with self._locked(target.tenant) as held:
            if held is None:
                return SweepReport(target.tenant, slot, since_ms or 0, busy=True)
            progress = await self._progress(target, slot, since_ms)
            report = SweepReport(target.tenant, slot, progress.since, upper=progress.upper)
            try:
                client = await self.client_for(target.tenant)
                await self._sweep(client, held, slot, progress, report, max_items)
                if report.complete:
                    await self.state.complete(
                        slot, target.tenant, progress, self._now(), advance=slot == "auto"
                    )
            except Defer as exc:
                report.complete = False
                report.yielded, report.retry_in = exc.reason, exc.delay
                report.budget = isinstance(exc, BudgetExhausted)
            if not report.complete and held.is_set():  # a run that lost the lock writes none
                await self.state.save_progress(slot, target.tenant, progress)
            return report

    async def trash(self, target: Target) -> TrashReport:
        """One run of the tenant's trash listing (:mod:`workers.reconcile_trash`), under the
        tenant's sweep lock; at most :attr:`trash_calls` listing calls."""
        async with self._locked(target.tenant) as held:
            if held is None:
                return TrashReport(target.tenant, busy=True)
            try:
                client = await self.client_for(target.tenant)
            except Defer as exc:  # no Forge token yet: try again at the next turn
                return TrashReport(target.tenant, yielded=exc.reason)
            return await list_trash(
                client,
                self.state,
                self.queue,
                target.tenant,
                self._now(),
                held,
                max_calls=self.trash_calls,
            )

    @contextlib.asynccontextmanager
    async def _locked(self, tenant: str) -> AsyncIterator[asyncio.Event | None]:
        """The tenant's sweep lock, renewed while held (one call can wait long for budget),
        not only between pages; yields None when another run holds it, else an event that
        is cleared when a renewal finds the lock gone (the run ends at its next page)."""
        token = await self.state.lock(tenant, LOCK_SECONDS)
        if token is None:
            yield None
            return
        held = asyncio.Event()
        held.set()
        keeper = asyncio.create_task(self._hold(tenant, token, held))
        try:
            yield held
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self.state.unlock(tenant, token)

    async def _hold(self, tenant: str, token: str, held: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(LOCK_SECONDS / 4)
            try:
                if not await self.state.extend(tenant, token, LOCK_SECONDS):
                    held.clear()
                    return
            except (RedisError, OSError):
                continue  # the lock is still good for a while: try again at the next beat
            except Exception:
                held.clear()  # cannot renew it any more: stop at the next page rather than
                raise  # run on unlocked

    async def _progress(self, target: Target, slot: Slot, since_ms: int | None) -> Progress:
        if since_ms is not None:  # an asked window too reaches back no further than the install
            since_ms = max(since_ms, target.installed_ms)
        progress = await self.state.progress(slot, target.tenant)
        # A window starting before the install is an unfinished sweep from before an uninstall
        # (its state is kept): the reinstalled site is swept from the reinstall on.
        if (
            progress is not None
            and progress.since >= target.installed_ms
            and (since_ms is None or progress.since == since_ms)
        ):
            progress.runs += 1
            return progress
        if since_ms is None:
            watermark = await self.state.watermark(target.tenant)
            overlap = self.settings.reconcile_overlap_seconds
            since_ms = window_start(watermark, target.first_ms, overlap, target.installed_ms)
        progress = Progress(since=since_ms, started=self._now(), runs=1)
        await self.state.save_progress(slot, target.tenant, progress)
        return progress

    def _query(self, progress: Progress, pad: int, lead: int) -> tuple[str, int, int]:
        """A query for the window still to read: (CQL, reach, back), see :class:`Progress`."""
        built = self._now()
        cql = build_cql(built, progress.since, progress.upper, lead_ms=lead, pad_ms=pad)
        back = lower_minutes(built, progress.since - pad, lead) * MINUTE_MS
        return cql, reach_ms(built, progress.since - pad, lead), back

    async def _sweep(
        self,
        client: SweepClient,
        held: asyncio.Event,
        slot: Slot,
        progress: Progress,
        report: SweepReport,
        max_items: int | None,
    ) -> None:
        tenant = report.tenant
        # The query's bounds are relative to Confluence's clock (``now("-Nm")``), evaluated
        # when each request of its cursor arrives, after any wait for budget inside the call:
        # while pages are read, the lower bound creeps forward and may drop the window's
        # oldest hits (the last pages). So the search counts as ended only when its last page
        # was answered by the query's reach (:func:`reach_ms`, measured on the answer, which
        # is no earlier than the evaluation). After a later end, only what is older than the
        # lower bound had crept to is left to read (everything above it was in the answers):
        # a new query reads it, reaching ahead by the longest search call seen; a few late
        # ends in a row stop the run unfinished. Both bounds are padded by the overlap:
        # Confluence's clock may differ from the worker's (``upper`` is Confluence's time,
        # ``since`` mostly the worker's).
        pad = int(self.settings.reconcile_overlap_seconds * 1000)
        lead = 0
        late = 0  # late ends in this run
        cql, reach, back = self._query(progress, pad, lead)
        next_url: str | None = None
        if progress.cursor and progress.reach is not None and progress.back is not None:
            # resume the search under way at its next page (a query built from ``upper``
            # would read again every hit near the bound, which may be more than a run reads)
            next_url, reach, back = progress.cursor, progress.reach, progress.back
        resumed = next_url  # the saved cursor, until its page is read
        read = 0
        while True:
            sent = self._now()
            page = await self._search_page(client, cql, next_url, resumed)
            if page is None:  # the saved cursor is one Confluence no longer takes
                next_url = resumed = progress.cursor = progress.reach = progress.back = None
                cql, reach, back = self._query(progress, pad, lead)
                continue
            results, next_url = page
            resumed = None
            answered = self._now()
            lead = max(lead, answered - sent)
            await self._finish(tenant, client, results, progress)
            read += len(results)
            ended = next_url is None
            if ended and answered > reach:  # the lower bound may have crept past hits
                crept = answered - back
                progress.upper = crept if progress.upper is None else min(progress.upper, crept)
            progress.cursor = next_url
            progress.reach, progress.back = (reach, back) if next_url else (None, None)
            if not held.is_set():  # another sweep of the tenant may hold it now: stop here
                report.complete = False
                report.yielded = "lock lost"
                return
            await self.state.save_progress(slot, tenant, progress)
            report.upper, report.items = progress.upper, progress.items
            report.found, report.enqueued = progress.found, progress.enqueued
            report.pages += 1
            report.complete = ended and answered <= reach
            if ended and not report.complete:
                late += 1
                if late > LATE_ENDS:
                    report.yielded = "search answered too late to cover the window"
                else:
                    if late > 1:
                        lead = max(2 * lead, MINUTE_MS)  # the longest call was not enough
                    cql, reach, back = self._query(progress, pad, lead)
            if self.on_page is not None:
                self.on_page(report)
            if report.complete or report.yielded is not None:
                return
            if max_items is not None and read >= max_items and next_url is not None:
                return  # the next run resumes at the cursor

    async def _search_page(
        self, client: SweepClient, cql: str, next_url: str | None, resumed: str | None
    ) -> tuple[list[SearchResult], str | None] | None:
        """One page of the search; None when it was the saved cursor a run resumes
        (``resumed``) and Confluence refused it (expired): the window left is then read with a
        new query. Any other refusal is an error."""
        try:
            return await client.search_page(cql, next_url, limit=self.page_size)
        except BadRequest:
            if resumed is None or next_url != resumed:
                raise
            return None

    async def _finish(
        self, tenant: str, client: SweepClient, results: list[SearchResult], progress: Progress
    ) -> None:
        """Enqueue what a page of hits missed and count it in ``progress`` (its ``upper``
        moves to the oldest hit finished). Hits modified before the window (brought in by the
        bounds' rounding and padding) are not the sweep's: they are not read in bulk."""
        stamped = [(r, parse_time_ms(r.last_modified)) for r in results]
        inside = [r for r, when in stamped if when is None or when >= progress.since]
        hits = await self._hits(tenant, client, inside) if inside else []
        found, enqueued = await self._emit(tenant, hits, progress.since)
        times = [when for _, when in stamped if when is not None]
        if times:
            low = min(times)
            progress.upper = low if progress.upper is None else min(progress.upper, low)
        progress.items += len(results)
        progress.found += found
        progress.enqueued += enqueued

    async def _hits(
        self, tenant: str, client: SweepClient, results: list[SearchResult]
    ) -> list[Hit]:
        wanted: dict[str, list[tuple[str, int | None]]] = {}
        for result in results:
            kind = content_kind(result.content_type)
            if kind is not None and result.content_id:
                when = parse_time_ms(result.last_modified)
                wanted.setdefault(kind, []).append((result.content_id, when))
        found: list[tuple[str, Content, int | None]] = []
        for kind, pairs in wanted.items():
            current = await client.current(kind, [cid for cid, _ in pairs])
            found += [(kind, current[cid], when) for cid, when in pairs if cid in current]
        known = self._space_keys
        space_ids = {
            c.space_id for _, c, _ in found if c.space_id and (tenant, c.space_id) not in known
        }
        if space_ids:
            if len(known) + len(space_ids) > MAX_SPACE_KEYS:
                known.clear()  # bounded: what is still needed is read again, a page at a time
            for space_id, key in (await client.space_keys(sorted(space_ids))).items():
                known[tenant, space_id] = key
        return [
            Hit(kind, content, when, known.get((tenant, content.space_id or "")))
            for kind, content, when in found
        ]

    async def _emit(self, tenant: str, hits: list[Hit], since: int) -> tuple[int, int]:
        """Enqueue the versions never seen; returns (found missing, newly enqueued)."""
        # CQL bounds are whole minutes, rounded outwards: a hit last modified before the window
        # (before the install, on a first sweep) is read but is not the sweep's to enqueue.
        live = [
            h
            for h in hits
            if h.content.version is not None
            and (h.last_modified is None or h.last_modified >= since)
        ]
        asks = [
            (
                (f"{h.kind}.created", f"{h.kind}.updated"),
                h.content.id,
                probe_versions(h.content.version_number, VERSION_PROBE),
            )
            for h in live
        ]
        seen = await self.state.seen(tenant, asks)
        jobs = []
        found = 0
        for hit, versions_seen in zip(live, seen, strict=True):
            created = parse_time_ms(hit.content.created_at)
            in_window = created is not None and created >= since
            missing = missing_versions(
                hit.content.version_number, versions_seen, in_window, VERSION_PROBE
            )
            found += len(missing)
            if missing:
                jobs.append(self._put_versions(tenant, hit, missing))
        results = await asyncio.gather(*jobs)
        return found, sum(results)

    async def _put_versions(self, tenant: str, hit: Hit, versions: list[int]) -> int:
        enqueued = 0
        for version in versions:  # in order: the pipeline keeps per-content order
            enqueued += int(await self.queue.put(self._event(tenant, hit, version)))
        return enqueued

    def _event(self, tenant: str, hit: Hit, version: int) -> Event:
        content = hit.content
        current = content.version
        is_current = current is not None and current.number == version
        when = parse_time_ms(current.created_at) if is_current and current else None
        timestamp = when or self._now()
        type_ = event_type(hit.kind, version)
        return Event(
            id=event_id(tenant, type_, content.id, version, timestamp),
            source="reconcile",
            tenant=tenant,
            type=type_,
            content_id=content.id,
            content_type=hit.kind,
            timestamp=timestamp,
            version=version,
            space_id=content.space_id,
            space_key=hit.space_key,
            actor=current.author_id if is_current and current else None,
            title=content.title,
        )
