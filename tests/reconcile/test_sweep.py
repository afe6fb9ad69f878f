"""Sweeps against the simulator over real sockets, with webhook deliveries dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.atlassian.connect_jwt import encode_connect_token
from app.budget.hook import BudgetExhausted, Observation, Priority, Reservation
from app.budget.redis_budget import RedisBudget
from app.reconcile_state import ReconcileState
from tests.reconcile.conftest import Recorder, Stack
from workers.reconcile_runtime import runtime

PAGES, BLOGS, EDITS = 10, 3, 3


async def _edit_run(stack: Stack) -> None:
    """Users create pages and blog posts and edit each a few times."""
    ids = [await stack.create(f"Page {n}") for n in range(PAGES)]
    ids += [await stack.create(f"Post {n}", kind="blogpost") for n in range(BLOGS)]
    for round_ in range(EDITS):
        for content_id in ids:
            await stack.edit(content_id, f"edit {round_}")


async def test_one_sweep_recovers_dropped_webhooks_exactly_once(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    await stack.faults(webhook_drop=0.3)
    await _edit_run(stack)
    log = await stack.drain()
    dropped = [d for d in log if d["outcome"] == "dropped"]
    delivered = [d for d in log if d["outcome"] == "delivered"]
    assert len(dropped) >= 5 and len(delivered) >= 20  # the faults really bit
    assert all(d["status"] == 204 for d in delivered)

    async with runtime(redis, stack.settings) as rt:
        (target,) = [t for t in await rt.targets() if t.tenant == stack.tenant]
        assert await rt.due(target)
        report = await rt.sweeper.run(target)
        assert report.complete and report.yielded is None
        assert not await rt.due(target)  # the watermark moved: next sweep in one interval

    recorder = Recorder()
    await drain_queue(recorder)
    expected = stack.expected_versions()
    assert recorder.versions() == expected  # every version processed, each exactly once
    by_source = Counter(e.source for e in recorder.events)
    # dropped webhooks plus the space homepage (Confluence sends no event for it)
    assert by_source["reconcile"] == report.enqueued == len(dropped) + 1
    assert by_source["connect"] == len(delivered)
    assert report.found == report.enqueued
    # reconcile events carry what reactions filter on, as deliveries do
    swept = [e for e in recorder.events if e.source == "reconcile"]
    assert {(e.space_key, e.space_id) for e in swept} == {("DEV", stack.space_id)}
    assert all(e.title and e.content_type in ("page", "blogpost") for e in swept)
    created = [e for e in swept if e.version == 1]
    assert all(e.type in ("page.created", "blogpost.created") for e in created)

    # the sweep's calls are in the budget, at the lowest priority
    snapshot = await RedisBudget(redis, stack.settings).snapshot()
    assert snapshot.priorities[int(Priority.RECONCILE)].charged > 0

    # a second sweep finds nothing new
    state = ReconcileState(redis, stack.settings.redis_prefix)
    await state.set_watermark(stack.tenant, (await state.watermark(stack.tenant) or 0) - 300_000)
    async with runtime(redis, stack.settings) as rt:
        again = await rt.sweeper.run(target)
    assert again.complete and again.items >= len(expected) // 4 and again.enqueued == 0


async def test_a_late_webhook_after_the_sweep_is_deduped(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    await stack.faults(webhook_drop=1.0)
    page = await stack.create("Late")
    await stack.edit(page, "second")
    log = await stack.drain()
    lost = [d for d in log if d["outcome"] == "dropped" and d["event"] == "page_updated"]
    assert lost

    async with runtime(redis, stack.settings) as rt:
        (target,) = await rt.targets()
        report = await rt.sweeper.run(target)
    assert report.complete and report.enqueued == 3  # homepage v1, page v1 and v2
    first = Recorder()
    await drain_queue(first)
    assert first.versions()[(page, 2)] == 1

    # the webhook arrives after all (a delayed delivery): accepted, stored once, not run again
    app = next(iter(stack.sim.store.connect_apps.values()))
    url = f"{stack.app_url}/connect/webhooks/page_updated"
    token = encode_connect_token(
        issuer=app.client_key,
        secret=app.shared_secret,
        method="POST",
        url=url,
        base_url=stack.app_url,
    )
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(
            url, json=lost[0]["body"], headers={"Authorization": f"JWT {token}"}
        )
    assert answer.status_code == 204
    second = Recorder()
    await drain_queue(second)
    assert second.events == []


async def test_a_crashed_sweep_resumes_where_it_stopped(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    await stack.faults(webhook_drop=1.0)  # an outage: nothing is delivered
    for batch in range(4):
        for n in range(5):
            await stack.edit(await stack.create(f"B{batch} P{n}"), "two")
        stack.sim.clock.advance(600)  # ten minutes between batches
    await stack.drain()
    total = len({cid for cid, _ in stack.expected_versions()})

    class Crash(Exception):
        pass

    pages_seen: list[int] = []

    def crash_after_two_pages(report: Any) -> None:
        pages_seen.append(report.pages)
        if report.pages == 2:
            raise Crash

    clock = stack.sim.clock.time
    async with runtime(redis, stack.settings, clock=clock, on_page=crash_after_two_pages) as rt:
        (target,) = await rt.targets()
        rt.sweeper.page_size = 5
        with pytest.raises(Crash):
            await rt.sweeper.run(target)
    state = ReconcileState(redis, stack.settings.redis_prefix)
    saved = await state.progress("auto", stack.tenant)
    assert saved is not None and saved.items == 10 and saved.upper is not None
    assert await state.watermark(stack.tenant) is None

    async with runtime(redis, stack.settings, clock=clock) as rt:
        rt.sweeper.page_size = 5
        assert await rt.due(target)
        report = await rt.sweeper.run(target)
    assert report.complete
    read_after_resume = report.items - 10
    assert read_after_resume < total  # it did not start over
    assert await state.progress("auto", stack.tenant) is None
    assert await state.watermark(stack.tenant) is not None

    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions() == stack.expected_versions()
    assert {e.source for e in recorder.events} == {"reconcile"}


async def test_a_bounded_run_pauses_and_the_next_run_finishes(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    await stack.faults(webhook_drop=1.0)
    for batch in range(3):
        for n in range(4):
            await stack.create(f"B{batch} P{n}")
        stack.sim.clock.advance(600)
    await stack.drain()
    clock = stack.sim.clock.time
    runs = []
    async with runtime(redis, stack.settings, clock=clock) as rt:
        rt.sweeper.page_size = 4
        (target,) = await rt.targets()
        while True:
            report = await rt.sweeper.run(target, max_items=4)
            runs.append(report)
            if report.complete:
                break
            assert len(runs) < 10
    assert len(runs) >= 3
    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions() == stack.expected_versions()


async def test_trashed_restored_and_purged_pages_between_sweeps(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    pages = [await stack.create(f"T{n}") for n in range(3)]
    await stack.drain()
    async with runtime(redis, stack.settings) as rt:
        (target,) = await rt.targets()
        assert (await rt.sweeper.run(target)).complete
        first = await rt.sweeper.trash(target)
    assert first.complete and first.baseline and first.enqueued == 0
    await drain_queue(Recorder())

    await stack.faults(webhook_drop=1.0)
    auth = httpx.BasicAuth("admin@example.com", "reconcile-sim-token")
    async with httpx.AsyncClient(base_url=stack.sim_url, auth=auth, timeout=5) as api:
        for page in pages:
            assert (await api.delete(f"/wiki/api/v2/pages/{page}")).status_code == 204
    await stack.drain()
    async with runtime(redis, stack.settings) as rt:
        second = await rt.sweeper.trash(target)
    assert second.complete and not second.baseline
    assert (second.trashed, second.restored, second.deleted, second.enqueued) == (3, 0, 0, 3)

    async with httpx.AsyncClient(base_url=stack.sim_url, auth=auth, timeout=5) as api:
        restored = await api.put(
            f"/wiki/api/v2/pages/{pages[0]}",
            json={
                "id": pages[0],
                "status": "current",
                "title": "T0",
                "body": {"representation": "storage", "value": "<p>v1</p>"},
                "version": {"number": 2},
            },
        )
        assert restored.status_code == 200, restored.text
        purged = await api.delete(f"/wiki/api/v2/pages/{pages[1]}", params={"purge": "true"})
        assert purged.status_code == 204
    await stack.drain()
    async with runtime(redis, stack.settings) as rt:
        third = await rt.sweeper.trash(target)
    assert (third.trashed, third.restored, third.deleted, third.enqueued) == (0, 1, 1, 2)

    recorder = Recorder()
    await drain_queue(recorder)
    kinds = Counter((e.type, e.content_id) for e in recorder.events if e.source == "reconcile")
    assert kinds == Counter(
        [("page.trashed", p) for p in pages]
        + [("page.restored", pages[0]), ("page.deleted", pages[1])]
    )
    assert dataclasses.asdict(third)["tenant"] == stack.tenant


async def test_the_first_sweep_leaves_what_changed_before_the_install(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    """Installing the app on a busy site must not greet or scan every page edited in the
    minutes before: the first window starts at the install, not an overlap before it."""
    await stack.faults(webhook_drop=1.0)  # nothing delivered: only the sweep can find them
    before = await stack.create("Before the install")
    await stack.drain()
    await asyncio.sleep(0.05)
    installed_ms = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    after = await stack.create("After the install")
    await stack.drain()
    async with runtime(redis, stack.settings) as rt:
        (target,) = [t for t in await rt.targets() if t.tenant == stack.tenant]
        target = dataclasses.replace(target, first_ms=installed_ms, installed_ms=installed_ms)
        bulk_read: list[str] = []
        client_for = rt.sweeper.client_for

        async def recording(tenant: str) -> Any:
            client = await client_for(tenant)
            current = client.current

            async def read(kind: str, ids: Any) -> Any:
                bulk_read.extend(ids)
                return await current(kind, ids)

            client.current = read  # type: ignore[method-assign]
            return client

        rt.sweeper.client_for = recording
        report = await rt.sweeper.run(target)
        # the padded query found the page from before the window; it was not read in bulk
        assert report.items >= 2 and before not in bulk_read and after in bulk_read
        assert report.complete
        # the next sweep soon after: its overlap stops at the install as well
        state = ReconcileState(redis, stack.settings.redis_prefix)
        await state.set_watermark(stack.tenant, installed_ms + 10_000)  # overlap: 60 s
        again = await rt.sweeper.run(target)
    assert again.complete
    recorder = Recorder()
    await drain_queue(recorder)
    swept = [e.content_id for e in recorder.events if e.source == "reconcile"]
    assert swept == [after], (before, swept)


@pytest.mark.parametrize("stall_seconds", [0, 15 * 60])
async def test_time_passing_between_pages_does_not_drop_the_window_s_oldest_changes(
    stall_seconds: int, stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    """The query's lower bound is relative to Confluence's clock (``now("-Nm")``): if a
    budget wait or slow calls let time pass between two pages of hits, the cursor's query
    would have crept past the oldest changes. The sweep builds it again from the window left."""
    from workers.reconcile import Target

    await stack.faults(webhook_drop=1.0)  # an outage: nothing delivered
    start = stack.sim.clock.millis()
    for batch in range(3):
        for n in range(5):
            await stack.create(f"B{batch} P{n}")
        stack.sim.clock.advance(600)
    await stack.drain()

    def stall(report: Any) -> None:
        if report.pages == 1:
            stack.sim.clock.advance(stall_seconds)

    since = start - 30_000
    async with runtime(redis, stack.settings, clock=stack.sim.clock.time, on_page=stall) as rt:
        rt.sweeper.page_size = 5
        report = await rt.sweeper.run(Target(stack.tenant, since), slot="manual", since_ms=since)
    assert report.complete
    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions() == stack.expected_versions()


class SlowPoints:
    """A budget whose every reservation waits ``seconds`` (simulated) for points, as a
    sweep's call does when reactions spent the hour's quota; then admits it."""

    def __init__(self, inner: RedisBudget, clock: Any, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        self.clock.advance(self.seconds)
        return await self.inner.reserve(tenant, cost, priority)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        await self.inner.settle(reservation, observation)


@pytest.mark.parametrize("wait_seconds", [0, 150, 400])
async def test_calls_that_wait_for_budget_still_read_the_window_s_oldest_changes(
    wait_seconds: float, stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    """Confluence evaluates ``now("-Nm")`` when the request arrives, after the call's wait for
    points: a sweep must not count as complete on a page whose lower bound crept past its
    window's start."""
    from workers.reconcile import Target

    await stack.faults(webhook_drop=1.0)
    since = stack.sim.clock.millis()
    early = [await stack.create(f"Early {n}") for n in range(3)]
    stack.sim.clock.advance(600)
    late = [await stack.create(f"Late {n}") for n in range(3)]
    await stack.drain()

    budget = SlowPoints(RedisBudget(redis, stack.settings), stack.sim.clock, wait_seconds)
    async with runtime(redis, stack.settings, clock=stack.sim.clock.time, budget=budget) as rt:
        report = await rt.sweeper.run(Target(stack.tenant, since), slot="manual", since_ms=since)
    assert report.complete
    recorder = Recorder()
    await drain_queue(recorder)
    swept = {e.content_id for e in recorder.events if e.source == "reconcile"}
    assert set(early) | set(late) <= swept


@pytest.mark.parametrize("skew_seconds", [0, 150, -150])
async def test_clock_skew_within_the_overlap_loses_nothing(
    skew_seconds: float, stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    """The worker's clock differs from Confluence's: bounds built on one and evaluated on the
    other (a resumed run's upper bound, the first sweep's lower bound) are padded by the
    overlap, so bounded runs resume without skipping hits and the first sweep reaches the
    install."""
    await stack.faults(webhook_drop=1.0)
    for batch in range(3):
        for n in range(6):
            await stack.create(f"B{batch} P{n}")
        stack.sim.clock.advance(600)
    await stack.drain()
    stack.sim.clock.advance(45)
    settings = stack.settings.model_copy(update={"reconcile_overlap_seconds": 300.0})

    def worker_clock() -> float:
        return stack.sim.clock.time() + skew_seconds

    runs = []
    async with runtime(redis, settings, clock=worker_clock) as rt:
        rt.sweeper.page_size = 4
        (target,) = await rt.targets()
        while True:
            report = await rt.sweeper.run(target, max_items=4)
            runs.append(report)
            if report.complete:
                break
            assert len(runs) < 12
    assert len(runs) >= 2  # it did resume
    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions() == stack.expected_versions()


class FewCalls:
    """A budget that admits ``calls`` Confluence calls, then says no as the budget does when
    reactions need the points (each tick's run of the sweep gets a new one)."""

    def __init__(self, inner: RedisBudget, calls: int) -> None:
        self.inner, self.left = inner, calls

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        if self.left <= 0:
            now = time.time()
            raise BudgetExhausted(now + 60, now, "no points left for sweeps")
        self.left -= 1
        return await self.inner.reserve(tenant, cost, priority)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        await self.inner.settle(reservation, observation)


async def test_many_changes_in_one_minute_and_a_tight_budget_still_finish(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    """More hits share the resume bound's minute than one run can read: each run goes on at
    the search cursor where the last one stopped, instead of reading the same first page."""
    await stack.faults(webhook_drop=1.0)
    for n in range(120):  # a bulk import: all in the same minute
        await stack.create(f"Imported {n}")
    await stack.drain()
    state = ReconcileState(redis, stack.settings.redis_prefix)
    runs: list[Any] = []
    while not runs or not runs[-1].complete:
        assert len(runs) < 8, [(r.items, r.upper, r.yielded) for r in runs]
        budget = FewCalls(RedisBudget(redis, stack.settings), 4)
        async with runtime(redis, stack.settings, clock=stack.sim.clock.time, budget=budget) as rt:
            (target,) = await rt.targets()
            report = await rt.sweeper.run(target)
        runs.append(report)
        saved = await state.progress("auto", stack.tenant)
        assert report.complete or (report.budget and saved is not None)
    assert len(runs) >= 2
    assert await state.watermark(stack.tenant) is not None
    assert runs[-1].items <= 121 + 50  # each hit read about once, not a page again per run
    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions() == stack.expected_versions()


async def test_after_a_reinstall_an_unfinished_sweep_from_before_is_not_resumed(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    """A sweep stopped before an uninstall keeps its progress; the reinstalled site is swept
    from the reinstall on, so that progress (its window starts before) is dropped."""
    await stack.faults(webhook_drop=1.0)
    for n in range(12):
        await stack.create(f"Before the uninstall {n}")
    await stack.drain()

    class Crash(Exception):
        pass

    def crash(report: Any) -> None:
        raise Crash

    async with runtime(redis, stack.settings, on_page=crash) as rt:
        rt.sweeper.page_size = 4
        (target,) = await rt.targets()
        with pytest.raises(Crash):
            await rt.sweeper.run(target)
    state = ReconcileState(redis, stack.settings.redis_prefix)
    assert await state.progress("auto", stack.tenant) is not None
    await drain_queue(Recorder())

    app = next(iter(stack.sim.store.connect_apps.values()))
    assert (await stack.admin.delete(f"/_sim/apps/connect/{app.key}")).status_code == 204
    await asyncio.sleep(1.1)  # the next lifecycle callback's token is issued a second later
    await stack.faults(webhook_drop=0.0)
    again = await stack.act(
        "/apps/connect", {"descriptorUrl": f"{stack.app_url}/atlassian-connect.json"}
    )
    assert again["clientKey"] == stack.tenant
    after = await stack.create("After the reinstall")
    await stack.drain()

    async with runtime(redis, stack.settings) as rt:
        (target,) = await rt.targets()
        report = await rt.sweeper.run(target)
    assert report.complete and report.since >= target.installed_ms
    recorder = Recorder()
    await drain_queue(recorder)
    swept = [e.content_id for e in recorder.events if e.source == "reconcile"]
    assert swept == []  # the page made after the reinstall came by webhook
    assert [e.content_id for e in recorder.events] == [after]


async def test_a_saved_cursor_confluence_refuses_is_dropped_and_the_window_read_anew(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    from app.reconcile_state import Progress

    await stack.faults(webhook_drop=1.0)
    since = stack.sim.clock.millis()
    pages = [await stack.create(f"Kept {n}") for n in range(3)]
    await stack.drain()
    state = ReconcileState(redis, stack.settings.redis_prefix)
    stale = f"{stack.sim_url}/wiki/rest/api/search?cql=type%3Dpage&limit=50&cursor=bm9wZQ%3D%3D"
    now = stack.sim.clock.millis()
    saved = Progress(since=since, started=now, cursor=stale, reach=now + 60_000, back=120_000)
    await state.save_progress("auto", stack.tenant, saved)
    async with runtime(redis, stack.settings, clock=stack.sim.clock.time) as rt:
        (target,) = await rt.targets()
        report = await rt.sweeper.run(target)
    assert report.complete and report.since == since
    recorder = Recorder()
    await drain_queue(recorder)
    assert set(pages) <= {e.content_id for e in recorder.events}
