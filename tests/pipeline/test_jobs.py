"""The job layer on real Redis and real arq workers, with dispatchers injected."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from app.atlassian.events import Event, from_connect
from app.confluence.errors import NotFound
from app.dlq import DeadLetters, Filter
from app.errors import Defer, PermanentFailure, TransientFailure
from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.pipeline.conftest import page_event
from workers.dispatch import JobContext

MakeWorker = Callable[..., Worker]


class Recorder:
    """A dispatcher that records calls and fails as told."""

    def __init__(self, fail: Callable[[Event, JobContext], BaseException | None] | None = None):
        self.calls: list[tuple[Event, int]] = []
        self.fail = fail

    async def __call__(self, event: Event, job: JobContext) -> None:
        self.calls.append((event, job.attempt))
        error = self.fail(event, job) if self.fail else None
        if error is not None:
            raise error


async def state(log: EventLog, event: Event) -> str:
    record = await log.record(event.id)
    assert record is not None
    return record.state


async def test_an_event_runs_once_and_stays_deduplicated(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue, log, handler = EventQueue(redis, settings), EventLog(redis, settings), Recorder()
    event = page_event(1, 1)
    assert await queue.put(event) is True
    await burst_worker(dispatch=handler).main()
    assert [(e.id, n) for e, n in handler.calls] == [(event.id, 1)]
    assert await state(log, event) == "done"
    assert await queue.put(event) is False, "the dedupe window outlives the finished job"
    await burst_worker(dispatch=handler).main()
    assert len(handler.calls) == 1


async def test_a_poison_event_is_retried_then_dead_lettered_then_replayed(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue, log, dlq = (
        EventQueue(redis, settings),
        EventLog(redis, settings),
        DeadLetters(redis, settings),
    )
    poison, after = page_event(1, 1), page_event(1, 2)
    broken = True
    handler = Recorder(
        lambda e, job: (
            TransientFailure(f"boom {job.attempt}") if broken and e.id == poison.id else None
        )
    )
    await queue.put(poison)
    await queue.put(after)
    await burst_worker(dispatch=handler).main()
    assert [(e.id, n) for e, n in handler.calls] == [
        (poison.id, 1),
        (poison.id, 2),
        (poison.id, 3),
        (after.id, 1),
    ], "three attempts (two retries), then the next event of the content"
    assert await state(log, poison) == "dead" and await state(log, after) == "done"
    dead = await dlq.show(poison.id)
    assert dead is not None and dead.record.attempts == 3
    assert [a.error for a in dead.attempts] == [f"TransientFailure: boom {n}" for n in (1, 2, 3)]
    assert [a.outcome for a in dead.attempts] == ["retry", "retry", "dead"]
    assert all(a.started > 0 and a.duration_ms >= 0 for a in dead.attempts)
    assert dead.attempts[1].started - dead.attempts[0].started >= 40, "backoff between attempts"
    assert [r.id for r in await dlq.find(Filter(tenant="site-a"))] == [poison.id]
    kept = await redis.ttl(dlq.log.keys.event(poison.id))
    assert kept > settings.event_retention_seconds, "dead letters outlive ordinary records"
    assert await dlq.find(Filter(tenant="elsewhere")) == []

    broken = False
    assert await dlq.retry(poison.id) is True
    assert await dlq.count() == 0
    await burst_worker(dispatch=handler).main()
    replayed, attempt = handler.calls[-1]
    assert (replayed.id, replayed.source, attempt) == (poison.id, "replay", 1)
    record = await log.record(poison.id)
    assert record is not None and (record.state, record.replays) == ("done", 1)
    assert await dlq.retry(poison.id) is False, "only dead events are replayed"


async def test_permanent_failures_skip_retries_and_can_be_discarded(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue, dlq = EventQueue(redis, settings), DeadLetters(redis, settings)
    events = [page_event(n, 1) for n in range(3)]
    handler = Recorder(lambda e, job: PermanentFailure("page is gone"))
    for event in events:
        await queue.put(event)
    await burst_worker(dispatch=handler).main()
    assert len(handler.calls) == 3
    assert {r.id for r in await dlq.find()} == {e.id for e in events}
    assert await dlq.discard(events[0].id) is True
    assert await dlq.discard(events[0].id) is False
    assert sorted(await dlq.retry_all(Filter(type="page.updated"))) == sorted(
        e.id for e in events[1:]
    )
    assert await dlq.count() == 0


def trashed_event(content: int, tenant: str = "site-a") -> Event:
    """The Connect page_trashed that follows ``page_event(content, ...)``."""
    body = page_event(content, 1, tenant).raw
    return from_connect(tenant, "page_trashed", {**body, "timestamp": body["timestamp"] + 1000})


async def test_a_change_whose_content_was_removed_since_ends_superseded_not_dead(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    """page_updated then page_trashed: the update finds no page (404). With the removal
    waiting behind it in the content's line, that is no failure to replay; without one it is.
    """
    queue, log, dlq = (
        EventQueue(redis, settings),
        EventLog(redis, settings),
        DeadLetters(redis, settings),
    )
    edited, trashed = page_event(1, 3), trashed_event(1)
    lone = page_event(2, 3)  # its page is gone too, but nothing says it was removed
    edited_again = page_event(2, 4)

    def gone(e: Event, job: JobContext) -> BaseException | None:
        if e.type == "page.updated":
            return NotFound("Not Found", status=404, url=f"https://x/pages/{e.content_id}")
        return None

    handler = Recorder(gone)
    for event in (edited, trashed, lone, edited_again):
        assert await queue.put(event) is True
    await burst_worker(dispatch=handler).main()
    record = await log.record(edited.id)
    assert record is not None and record.state == "superseded"
    assert "NotFound" in record.reason and "page.trashed" in record.reason
    assert await state(log, trashed) == "done", "the removal runs after it"
    assert [e.id for e, _ in handler.calls].count(trashed.id) == 1
    assert await log.attempts(edited.id) == []
    assert {r.id for r in await dlq.find()} == {lone.id, edited_again.id}


async def test_deferral_waits_without_counting_an_attempt(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    event = page_event(1, 1)
    seen_states: list[str] = []

    def fail(e: Event, job: JobContext) -> BaseException | None:
        return Defer(0.05, "budget exhausted") if len(handler.calls) <= 3 else None

    handler = Recorder(fail)
    await queue.put(event)
    await burst_worker(dispatch=handler).main()
    seen_states.append(await state(log, event))
    assert [n for _, n in handler.calls] == [1, 1, 1, 1], "a deferral is not an attempt"
    assert seen_states == ["done"]
    assert await log.attempts(event.id) == []


async def test_a_deferred_event_records_its_reason(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    event = page_event(1, 1)
    await queue.put(event)
    await redis.pexpire(f"arq:job:{event.id}", 60_000)  # its week nearly over
    worker = burst_worker(dispatch=Recorder(lambda e, job: Defer(60, "waiting for a token")))
    task = asyncio.create_task(worker.main())
    for _ in range(100):
        record = await log.record(event.id)
        if record is not None and record.state == "deferred":
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    assert record is not None and (record.state, record.reason) == (
        "deferred",
        "waiting for a token",
    )
    assert record.next_run is not None and record.attempts == 0
    # each deferral renews the arq job's expiry along with the record's: a head deferred
    # longer than the job's week would otherwise be dropped by arq and block its line
    assert await redis.pttl(f"arq:job:{event.id}") > 6 * 24 * 3600 * 1000


async def test_a_wait_that_outlasts_its_bound_ends_as_a_dead_letter(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    """A deferral for something that may never come (a disabled site, a Forge token) gives up
    once its event is older than the bound: the line of its content moves on."""
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    waiting, next_one = page_event(1, 1), page_event(1, 2)
    await queue.put(waiting)
    await queue.put(next_one)
    record = f"{settings.redis_prefix}event:{waiting.id}"
    await redis.hset(record, "received", int(time.time() * 1000) - 3_601_000)  # type: ignore[misc]

    def fail(e: Event, job: JobContext) -> BaseException | None:
        return Defer(60, "the app is disabled", give_up_after=3600) if e.id == waiting.id else None

    handler = Recorder(fail)
    await burst_worker(dispatch=handler).main()
    assert await state(log, waiting) == "dead"
    dead = await log.record(waiting.id)
    assert dead is not None and dead.reason == "the app is disabled (waited too long)"
    assert await state(log, next_one) == "done"
    assert [e.id for e, _ in handler.calls] == [waiting.id, next_one.id]
    # replayed by an operator, it waits its full bound again (from the replay)
    assert await DeadLetters(redis, settings).retry(waiting.id)
    worker = burst_worker(dispatch=handler)
    task = asyncio.create_task(worker.main())
    for _ in range(100):
        if await state(log, waiting) in ("deferred", "dead"):
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    assert await state(log, waiting) == "deferred"


async def test_per_content_order_holds_across_several_workers(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue = EventQueue(redis, settings)
    active: dict[str, int] = defaultdict(int)
    seen: dict[str, list[int]] = defaultdict(list)
    overlap = {"max": 0, "now": 0}
    rng = random.Random(7)

    async def dispatch(event: Event, job: JobContext) -> None:
        active[event.content_id] += 1
        overlap["now"] += 1
        overlap["max"] = max(overlap["max"], overlap["now"])
        assert active[event.content_id] == 1, "two events of one content ran at once"
        seen[event.content_id].append(event.version or 0)
        await asyncio.sleep(rng.uniform(0, 0.004))
        active[event.content_id] -= 1
        overlap["now"] -= 1

    contents, versions = 8, 12
    arrivals = [(c, v) for v in range(1, versions + 1) for c in range(contents)]
    await asyncio.gather(*(queue.put(page_event(c, v)) for c, v in arrivals))
    workers = [burst_worker(dispatch=dispatch, concurrency=4) for _ in range(3)]
    await asyncio.gather(*(w.main() for w in workers))
    assert {c: seen[str(c)] for c in range(contents)} == {
        c: list(range(1, versions + 1)) for c in range(contents)
    }
    assert sum(w.jobs_complete for w in workers) == contents * versions
    assert sum(1 for w in workers if w.jobs_complete) >= 2, "work spread over workers"
    assert overlap["max"] > 1, "different contents ran side by side"


async def test_a_newer_event_supersedes_queued_older_ones(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    latest = settings.model_copy(update={"supersede_types": "page.updated"})
    queue, log, handler = EventQueue(redis, latest), EventLog(redis, latest), Recorder()
    events = [page_event(1, v) for v in range(1, 6)]
    for event in events:
        await queue.put(event)
    from workers.main import build_worker

    await build_worker(latest, burst=True, handle_signals=False, dispatch=handler).main()
    assert [e.version for e, _ in handler.calls] == [5]
    assert [await state(log, e) for e in events] == ["superseded"] * 4 + ["done"]


async def test_begin_marks_the_run_and_names_who_waits_behind_in_one_call(
    redis: Redis, settings: Settings
) -> None:
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    head, behind = page_event(2, 1), page_event(2, 2)
    other = page_event(3, 1)
    for event in (head, behind, other):
        await queue.put(event)
    started = await log.begin(head.id, later=True)
    assert started.record is not None and started.record.state == "queued"
    assert started.later_types == [behind.type]  # only its own content's line
    assert await state(log, head) == "running"
    assert (await log.begin(behind.id)).later_types == []  # not asked for
    await log.finish(head.id, head.content_key, "done", "")
    ended = await log.begin(head.id, later=True)
    assert ended.record is not None and ended.record.state == "done"
    assert await state(log, head) == "done", "an ended record is left as it is"
    assert await log.begin("ev_missing") == (None, [])


async def test_a_run_longer_than_the_job_timeout_is_a_failed_attempt(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    short = settings.model_copy(update={"job_timeout_seconds": 0.1, "retry_delays": ""})
    queue, dlq = EventQueue(redis, short), DeadLetters(redis, short)

    async def slow(event: Event, job: JobContext) -> Any:
        await asyncio.sleep(2)

    event = page_event(1, 1)
    await queue.put(event)
    from workers.main import build_worker

    await build_worker(short, burst=True, handle_signals=False, dispatch=slow).main()
    dead = await dlq.show(event.id)
    assert dead is not None
    assert dead.attempts[0].error.startswith("TimeoutError")
    assert 90 <= dead.attempts[0].duration_ms < 1500


async def test_duplicated_redelivered_and_cross_source_deliveries_run_once(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    import json

    from app.atlassian.events import from_connect, from_forge
    from tests.pipeline.conftest import FIXTURES

    forge_body = json.loads((FIXTURES / "forge" / "updated_page.json").read_text())
    connect_body = json.loads((FIXTURES / "connect" / "page_updated.json").read_text())
    connect_body["page"]["id"] = 838205441
    queue, handler = EventQueue(redis, settings), Recorder()
    deliveries = [
        from_forge("site-a", forge_body),
        from_forge("site-a", forge_body),  # Forge retry after a timeout
        from_connect("site-a", "page_updated", connect_body),  # the same change via Connect
    ]
    results = await asyncio.gather(*(queue.put(e) for e in deliveries))
    assert sorted(results) == [False, False, True]
    await burst_worker(dispatch=handler).main()
    assert await queue.put(deliveries[0]) is False, "still a duplicate after the job ran"
    await burst_worker(dispatch=handler).main()
    assert [e.content_id for e, _ in handler.calls] == ["838205441"]


async def test_replay_and_discard_check_the_state_in_the_step_that_moves_the_event(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    """A replay or discard that read "dead" a moment ago must not act on an event another
    operator replayed (or discarded) since: the scripts check the state themselves."""
    queue, log, dlq = (
        EventQueue(redis, settings),
        EventLog(redis, settings),
        DeadLetters(redis, settings),
    )
    first, second = page_event(1, 1), page_event(2, 1)
    for event in (first, second):
        await queue.put(event)
    await burst_worker(dispatch=Recorder(lambda e, job: PermanentFailure("gone"))).main()
    assert await dlq.count() == 2
    assert await dlq.retry(first.id) is True
    # What a second operator's stale view would do next: both are refused, nothing moves.
    assert await log.requeue(first) == 0
    refused = await log.finish(first.id, first.content_key, "discarded", "x", only_if="dead")
    assert refused.ended is False
    record = await log.record(first.id)
    assert record is not None and (record.state, record.replays) == ("queued", 1)
    assert await redis.zscore(log.keys.queue, first.id) is not None
    # Discarded, then a stale replay: refused too.
    assert await dlq.discard(second.id) is True
    assert await log.requeue(second) == 0
    assert await state(log, second) == "discarded"


async def test_a_replay_waits_for_arq_to_close_the_run_that_dead_lettered_it(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    """While arq still holds the run's in-progress key it has yet to delete the old job and
    its queue entry; a replay moved in before that would be wiped out with them."""
    queue, log, dlq = (
        EventQueue(redis, settings),
        EventLog(redis, settings),
        DeadLetters(redis, settings),
    )
    event = page_event(1, 1)
    await queue.put(event)
    await burst_worker(dispatch=Recorder(lambda e, job: PermanentFailure("gone"))).main()
    closing = f"arq:in-progress:{event.id}"
    await redis.set(closing, b"1", px=300)
    assert await log.requeue(event) == -1
    assert await dlq.retry(event.id) is True, "waited for the key to go"
    assert await redis.zscore(log.keys.queue, event.id) is not None
    await burst_worker(dispatch=Recorder(lambda e, job: PermanentFailure("gone"))).main()
    await redis.set(closing, b"1", px=10_000)
    assert await dlq.replay(event.id) == "closing", "gives up within its bound, and says why"
    assert await state(log, event) == "dead"
    await redis.delete(closing)


async def test_dead_letters_past_their_retention_are_not_counted(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    queue, dlq = EventQueue(redis, settings), DeadLetters(redis, settings)
    old, recent = page_event(1, 1), page_event(2, 1)
    for event in (old, recent):
        await queue.put(event)
    await burst_worker(dispatch=Recorder(lambda e, job: PermanentFailure("gone"))).main()
    retention_ms = dlq.log.dead_retention * 1000
    index = dlq.log.keys.dlq
    await redis.zadd(index, {old.id: int(time.time() * 1000) - retention_ms - 1000})
    assert await dlq.count() == 1


async def test_a_run_cancelled_by_arq_s_timeout_backstop_runs_again_and_frees_its_line(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaction ends in time, but the run's last Redis round trip stalls past arq's own
    timeout: arq cancels the job. Its record still heads the page's line, so the job must not
    end with it (arq deletes a job its timeout ended): it runs again and the next edit runs."""
    short = settings.model_copy(update={"job_timeout_seconds": 1.0})
    queue, log = EventQueue(redis, short), EventLog(redis, short)
    first, second = page_event(9, 1), page_event(9, 2)
    for event in (first, second):
        await queue.put(event)
    finish = EventLog.finish
    stalled: list[str] = []

    async def stalling(self: EventLog, event_id: str, *args: Any, **kwargs: Any) -> Any:
        if event_id == first.id and not stalled:
            stalled.append(event_id)
            await asyncio.sleep(3)  # a Redis failover, a slow fsync
        return await finish(self, event_id, *args, **kwargs)

    monkeypatch.setattr(EventLog, "finish", stalling)
    handler = Recorder()
    from workers.main import build_worker

    worker = build_worker(short, burst=True, handle_signals=False, dispatch=handler)
    await asyncio.wait_for(worker.main(), 60)
    assert stalled == [first.id]
    assert [await state(log, e) for e in (first, second)] == ["done", "done"]
    assert await redis.llen(log.keys.content(first.content_key)) == 0


async def test_a_reaction_slow_to_unwind_past_arq_s_backstop_still_ends_dead(
    redis: Redis, settings: Settings
) -> None:
    """The job timeout cancels the reaction, which takes longer than arq's 2 s margin to
    unwind: arq's backstop cuts the run off. That is an interrupted attempt (the record stays
    ``running``), so retries and the dead-letter store still apply: no endless re-runs."""
    short = settings.model_copy(update={"job_timeout_seconds": 0.3, "retry_delays": ""})
    queue, log = EventQueue(redis, short), EventLog(redis, short)
    event = page_event(7, 1)
    await queue.put(event)
    runs: list[float] = []

    async def dispatch(event: Event, job: JobContext) -> None:
        runs.append(asyncio.get_running_loop().time())
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.sleep(2.5))  # cleanup slower than arq's 2 s margin
            raise

    from workers.main import build_worker

    worker = build_worker(short, burst=True, handle_signals=False, dispatch=dispatch)
    await asyncio.wait_for(worker.main(), 30)
    record = await log.record(event.id)
    assert record is not None and record.state == "dead", record
    assert record.reason.startswith("WorkerLost")
    assert len(runs) == 1, "the next run found it interrupted once too often: dead, not rerun"
