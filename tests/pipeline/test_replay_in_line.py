"""A replayed dead letter rejoins its content's line as the last arrival: it has no job until
it heads the line, it is listed again, and a dead event delivered again stays a dead letter."""

from __future__ import annotations

import json

from redis.asyncio import Redis

from app.dlq import DeadLetters
from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.pipeline.conftest import page_event


async def _dead_with_a_leftover_job(redis: Redis, settings: Settings) -> tuple[EventLog, str, str]:
    """A dead-lettered behind B's start, its arq job left queued: a worker died between the
    script that dead-lettered A (and scheduled B) and arq's closing of A's job."""
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    a, b = page_event(61, 1), page_event(61, 2)
    assert await queue.put(a) and await queue.put(b)
    job = await redis.get(log.keys.arq_job(a.id))
    assert job is not None
    await log.begin(a.id)
    ended = await log.finish(a.id, a.content_key, "dead", "gone")
    assert ended.next_id == b.id
    await redis.set(log.keys.arq_job(a.id), job)  # what arq had yet to delete
    await redis.zadd(log.keys.queue, {a.id: 1})
    return log, a.id, b.id


async def test_a_replay_behind_newer_events_leaves_no_job_to_run_it_beside_them(
    redis: Redis, settings: Settings
) -> None:
    log, a, b = await _dead_with_a_leftover_job(redis, settings)
    assert await DeadLetters(redis, settings).retry(a) is True
    line = await redis.lrange(log.keys.content("site-a:61"), 0, -1)  # type: ignore[misc]
    assert [i.decode() for i in line] == [b, a]
    assert await redis.exists(log.keys.arq_job(a)) == 0
    assert await redis.zscore(log.keys.queue, a) is None
    assert await redis.zscore(log.keys.queue, b) is not None
    # Once B ends, A heads the line and gets its job.
    await log.begin(b)
    assert (await log.finish(b, "site-a:61", "done", "")).next_id == a
    job = json.loads(await redis.get(log.keys.arq_job(a)))
    assert job["a"] == [a] and await redis.zscore(log.keys.queue, a) is not None


async def test_a_replay_is_listed_as_a_fresh_arrival(redis: Redis, settings: Settings) -> None:
    """A dead letter outlives the events index (14 days against 3 by default): a replay put
    back in it, so the Jobs list shows the run the operator started."""
    log, a, _ = await _dead_with_a_leftover_job(redis, settings)
    await redis.zrem(log.keys.events, a)  # trimmed while it lay dead
    assert await DeadLetters(redis, settings).retry(a) is True
    assert await redis.zscore(log.keys.events, a) is not None


async def test_a_dead_event_delivered_again_after_the_window_stays_a_dead_letter(
    redis: Redis, settings: Settings
) -> None:
    queue, dlq = EventQueue(redis, settings), DeadLetters(redis, settings)
    log, a, _ = await _dead_with_a_leftover_job(redis, settings)
    await redis.delete(log.keys.dedupe(a))  # the dedupe window has passed
    event = await queue.get(a)
    assert event is not None
    assert await queue.put(event) is False
    record = await log.record(a)
    assert record is not None and record.state == "dead"
    assert await dlq.count() == 1 and [r.id for r in await dlq.find()] == [a]
