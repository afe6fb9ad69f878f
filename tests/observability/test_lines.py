"""Per-content lines and record retention; deferral timing as the job layer schedules it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from arq.worker import Retry
from redis.asyncio import Redis

from app import eventlog
from app.atlassian.events import Event
from app.budget.hook import BudgetExhausted
from app.errors import Defer
from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.dashboard.helpers import make_event
from workers.dispatch import JobContext
from workers.main import build_worker
from workers.pipeline import process_event


async def run_queued(settings: Settings) -> list[str]:
    """Run what the queue holds with a real worker (burst); the ids handled, in order."""
    ran: list[str] = []

    async def dispatch(event: Event, job: JobContext) -> None:
        ran.append(event.id)

    worker = build_worker(settings, burst=True, handle_signals=False, dispatch=dispatch)
    try:
        await worker.main()
    finally:
        await worker.close()
    return ran


async def test_a_waiting_event_whose_record_expired_is_skipped_and_releases_the_line(
    redis: Redis, settings: Settings
) -> None:
    first, lost, last = (make_event(content_id="7", version=v) for v in (1, 2, 3))
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    for event in (first, lost, last):
        assert await queue.put(event)
    await redis.delete(log.keys.event(lost.id))  # its retention ran out while it waited
    ran = await run_queued(settings)
    assert ran == [first.id, last.id]
    skipped = await log.record(lost.id)
    assert skipped is not None and skipped.state == "discarded"
    assert skipped.reason.startswith("RecordExpired")
    assert await redis.ttl(log.keys.event(lost.id)) > 0, "no record left without expiry"
    assert await redis.exists(log.keys.content(first.content_key)) == 0


async def test_more_expired_events_than_one_step_skips_never_block_the_line(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the most one step skips, the next expired event is scheduled as a stub that names
    its line and expires: the worker ends it and the line goes on (it used to be a record with
    no expiry and no content, which held the line for ever)."""
    monkeypatch.setattr(eventlog, "MAX_SKIPPED", 2)
    first, *lost, last = (make_event(content_id="17", version=v) for v in range(1, 7))
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    for event in (first, *lost, last):
        assert await queue.put(event)
    for event in lost:  # four waiting records ran out of retention
        await redis.delete(log.keys.event(event.id))
    ran = await run_queued(settings)
    assert ran == [first.id, last.id]
    for event in lost:
        record = await log.record(event.id)
        assert record is not None and record.state == "discarded", event.id
        assert await redis.ttl(log.keys.event(event.id)) > 0, "no record left without expiry"
    assert await redis.exists(log.keys.content(first.content_key)) == 0


async def test_a_line_that_keeps_changing_keeps_its_head_s_record(
    redis: Redis, settings: Settings
) -> None:
    """Workers down longer than the retention while a page keeps changing: the head's record
    lives as long as its line (a head whose record expired held the line for ever)."""
    head, later = make_event(content_id="18", version=1), make_event(content_id="18", version=2)
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    assert await queue.put(head)
    await redis.expire(log.keys.event(head.id), 5)  # about to run out
    assert await queue.put(later)
    assert await redis.ttl(log.keys.event(head.id)) > settings.event_retention_seconds - 60
    assert await redis.ttl(log.keys.content(head.content_key)) > 0


def job_ctx(settings: Settings, redis: Redis, error: Exception, **extra: Any) -> dict[str, Any]:
    async def dispatch(event: Event, job: JobContext) -> None:
        raise error

    return {"settings": settings, "redis": redis, "dispatch": dispatch, **extra}


async def test_a_deferred_head_keeps_its_record_and_line_alive(
    redis: Redis, settings: Settings
) -> None:
    head, behind = make_event(content_id="8", version=1), make_event(content_id="8", version=2)
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    assert await queue.put(head) and await queue.put(behind)
    line = log.keys.content(head.content_key)
    for key in (log.keys.event(head.id), line):
        await redis.expire(key, 30)
    with pytest.raises(Retry):
        await process_event(job_ctx(settings, redis, Defer(600.0, "no token")), head.id)
    assert await redis.ttl(log.keys.event(head.id)) > settings.event_retention_seconds - 60
    assert await redis.ttl(line) > settings.event_retention_seconds - 60


async def test_budget_deferrals_are_scheduled_with_the_spread(
    redis: Redis, settings: Settings
) -> None:
    spread = settings.model_copy(update={"retry_jitter": 0.2})
    event = make_event(content_id="9")
    assert await EventQueue(redis, spread).put(event)
    now = time.time()
    error = BudgetExhausted(retry_at=now + 100.0, now=now, reason="budget: hour used")
    with pytest.raises(Retry) as raised:
        await process_event(job_ctx(spread, redis, error, random=lambda: 1.0), event.id)
    assert raised.value.defer_score == pytest.approx(120_000, abs=50)
    record = await EventLog(redis, spread).record(event.id)
    assert record is not None and record.state == "deferred" and record.attempts == 0
    assert record.next_run is not None
    assert record.next_run - int(now * 1000) == pytest.approx(120_000, abs=1_000)


@pytest.mark.parametrize("fails", [False, True])
async def test_what_a_run_records_for_its_end_is_written_whether_it_ends_or_fails(
    redis: Redis, settings: Settings, fails: bool
) -> None:
    event = make_event(content_id="10")
    assert await EventQueue(redis, settings).put(event)
    marker = f"{settings.redis_prefix}test-after"

    async def dispatch(event: Event, job: JobContext) -> None:
        assert job.after is not None
        job.after.append(lambda pipe: pipe.set(marker, "written"))
        assert await redis.get(marker) is None, "not before the end of the run"
        if fails:
            raise RuntimeError("boom")

    ctx = {"settings": settings, "redis": redis, "dispatch": dispatch}
    if fails:
        with pytest.raises(Retry):
            await process_event(ctx, event.id)
    else:
        assert await process_event(ctx, event.id) == "done"
    assert await redis.get(marker) == b"written"


async def test_a_state_change_keeps_the_record_the_retention_and_never_for_ever(
    redis: Redis, settings: Settings
) -> None:
    event = make_event(content_id="19")
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    assert await queue.put(event)
    await redis.expire(log.keys.event(event.id), 5)
    await log.mark(event.id, "failed", "503 later", next_run=1)
    assert await redis.ttl(log.keys.event(event.id)) > settings.event_retention_seconds - 60
    await redis.delete(log.keys.event(event.id))  # expired while it ran
    await log.mark(event.id, "deferred", "budget")
    assert await redis.ttl(log.keys.event(event.id)) > 0, "no record left without expiry"
