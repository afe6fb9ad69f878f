"""The failing index (events awaiting a retry) kept by the job layer, and the time-ordered
index pages the listings read: the Overview's "failing now" whatever arrived since."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.dashboard.data import ReadModel
from app.errors import TransientFailure
from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.dashboard.helpers import count_reads, hold
from tests.pipeline.conftest import page_event
from workers.dispatch import JobContext

MakeWorker = Callable[..., Worker]


async def test_the_failing_index_follows_the_job_layer(
    redis: Redis, settings: Settings, burst_worker: MakeWorker
) -> None:
    log, model = EventLog(redis, settings), ReadModel(redis, settings)
    seen: list[tuple[int, bool]] = []
    event = page_event(1, 1)

    async def flaky(e: Event, job: JobContext) -> None:
        seen.append((job.attempt, await redis.zscore(log.failing, e.id) is not None))
        if job.attempt == 1:
            raise TransientFailure("503 from Confluence")

    await EventQueue(redis, settings).put(event)
    await burst_worker(dispatch=flaky).main()
    assert seen == [(1, False), (2, True)], "listed once marked failed, until it ends"
    assert await redis.zcard(log.failing) == 0
    assert await model.failing() == []


async def test_failing_now_is_read_from_the_indexes_whatever_arrived_since(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, model = EventLog(redis, settings), ReadModel(redis, settings)
    failed, dead = [page_event(n, 1, "site-f") for n in range(3)], [page_event(9, 1, "site-d")]
    await hold(redis, settings, failed, "failed")
    await hold(redis, settings, dead, "dead")
    await hold(redis, settings, [page_event(100 + n, 1) for n in range(600)])  # newer, done
    reads = count_reads(monkeypatch)
    assert {r["id"] for r in await model.failing(limit=15)} == {e.id for e in [*failed, *dead]}
    tenants = await model.failing_tenants(limit=10)
    assert [(t["tenant"], t["dead"], t["failing"]) for t in tenants] == [
        ("site-f", 0, 3),
        ("site-d", 1, 0),
    ]
    assert reads.whole == 0 and reads.round_trips <= 24
    # A failing event that runs again is no longer failing; one that ends leaves the index.
    await log.mark(failed[0].id, "deferred", "BudgetExhausted")
    await log.finish(failed[1].id, failed[1].content_key, "done", "")
    assert {r["id"] for r in await model.failing()} == {failed[2].id, dead[0].id}
    assert await redis.zrange(log.failing, 0, -1) == [failed[2].id.encode()]
    # Entries older than the retention are stale (their records expired): trimmed.
    stale = time.time() * 1000 - settings.event_retention_seconds * 1000 - 1
    await redis.zadd(log.failing, {"gone": stale})
    await log.mark(failed[0].id, "failed", "again", next_run=1)
    assert await redis.zscore(log.failing, "gone") is None


async def test_index_pages_neither_repeat_nor_skip_entries_of_the_same_millisecond(
    redis: Redis, settings: Settings
) -> None:
    log = EventLog(redis, settings)
    index = f"{settings.redis_prefix}some-index"
    for oldest_first in (True, False):
        await redis.zadd(index, {"a": 1, "b": 2, "c": 2, "d": 2, "e": 2, "f": 3})
        seen: list[str] = []
        after = None
        while batch := await log.entries(index, 2, after, oldest_first=oldest_first):
            seen += [e.member for e in batch]
            after = batch[-1]
            await redis.zrem(index, *(e.member for e in batch))  # as a bulk action does
        assert seen == (list("abcdef") if oldest_first else list("fedcba"))
