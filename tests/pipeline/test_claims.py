"""The batched claim of polled jobs: same checks as arq's, one round trip, slots respected."""

from __future__ import annotations

import asyncio
import time

from arq.connections import ArqRedis, create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import func
from redis.asyncio import Redis

from app import redis as redis_conn
from app.eventlog import MAX_LATER, EventLog, started
from app.queue import EventQueue
from app.settings import Settings
from tests.pipeline.conftest import page_event
from workers.claims import ClaimingWorker


async def _pool(settings: Settings, queue: str) -> ArqRedis:
    assert settings.redis_url is not None
    return await create_pool(redis_conn.arq_settings(settings.redis_url), default_queue_name=queue)


async def test_a_claim_takes_only_due_jobs_that_no_one_runs(
    redis: Redis, settings: Settings
) -> None:
    queue = f"{settings.redis_prefix}claims"
    pool = await _pool(settings, queue)
    ids = [f"{settings.redis_prefix}job{n}" for n in range(4)]
    now = int(time.time() * 1000)
    try:
        await redis.zadd(queue, {ids[0]: now - 10, ids[1]: now - 10, ids[2]: now + 60_000})
        await redis.set(in_progress_key_prefix + ids[1], b"1")  # another worker runs it
        worker = ClaimingWorker(
            functions=[func(_noop, name="noop")], queue_name=queue, redis_pool=pool, burst=True
        )
        worker.in_progress_timeout_s = 30
        found = await worker._claim(ids)  # ids[3] is not queued at all
        assert [bool(claim) for claim in found] == [True, False, False, False]
        assert found[0] == [str(now - 10).encode()], "its score, and no event run to start"
        ttl = await redis.pttl(in_progress_key_prefix + ids[0])
        assert 25_000 < ttl <= 30_000, "locked as long as arq locks a claimed job"
        assert not await redis.exists(in_progress_key_prefix + ids[2])
    finally:
        await redis.delete(*(in_progress_key_prefix + i for i in ids))
        await pool.aclose()


def _event_worker(pool: ArqRedis, queue: EventQueue, settings: Settings) -> ClaimingWorker:
    """A worker that starts the runs of the events it claims (as the reactor's workers do)."""
    return ClaimingWorker(
        functions=[func(_noop, name="noop")],
        queue_name=queue.keys.queue,
        redis_pool=pool,
        burst=True,
        event_prefix=settings.redis_prefix,
    )


async def test_claiming_an_event_starts_its_run_in_the_same_call(
    redis: Redis, settings: Settings
) -> None:
    head, behind = page_event(4, 1), page_event(4, 2)
    queue = EventQueue(redis, settings)
    assert await queue.put(head) and await queue.put(behind)
    pool = await _pool(settings, queue.keys.queue)
    try:
        worker = _event_worker(pool, queue, settings)
        worker.ctx["latest_only"] = lambda older, newer_type: True  # something supersedes
        [claim] = await worker._claim([head.id])
        assert claim and len(claim) == 2
        record = await EventLog(redis, settings).record(head.id)
        assert record is not None and record.state == "running"
        worker.begun[head.id] = started(head.id, claim[1])  # as start_jobs keeps it
        begun = worker.take_begun(head.id)
        assert begun is not None and begun.record is not None
        assert begun.record.state == "queued" and begun.later_types == [behind.type]
        assert worker.take_begun(head.id) is None, "taken once"
    finally:
        await redis.delete(in_progress_key_prefix + head.id)
        await pool.aclose()


async def test_who_waits_behind_is_read_only_for_superseding_and_never_the_whole_line(
    redis: Redis, settings: Settings
) -> None:
    """A page edited all day while its head waits has a long line: a run reads at most
    MAX_LATER types behind it, and none when nothing supersedes."""
    events = [page_event(5, version) for version in range(1, MAX_LATER + 50)]
    queue = EventQueue(redis, settings)
    for event in events:
        assert await queue.put(event)
    pool = await _pool(settings, queue.keys.queue)
    try:
        worker = _event_worker(pool, queue, settings)
        worker.ctx["latest_only"] = None
        [claim] = await worker._claim([events[0].id])
        assert started(events[0].id, claim[1]).later_types == []
        log = EventLog(redis, settings)
        head = await log.begin(events[0].id, later=True)
        assert head.later_types == [e.type for e in events[1 : MAX_LATER + 1]]
        # not at the head (a state no job of the pipeline starts from, but read right)
        middle = await log.begin(events[10].id, later=True)
        assert len(middle.later_types) == MAX_LATER
    finally:
        await redis.delete(in_progress_key_prefix + events[0].id)
        await pool.aclose()


async def test_two_workers_start_every_job_once_within_their_slots(
    redis: Redis, settings: Settings
) -> None:
    queue = f"{settings.redis_prefix}claims"
    pool = await _pool(settings, queue)
    runs: list[tuple[str, str]] = []
    running = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}

    def job(name: str):  # type: ignore[no-untyped-def]
        async def work(ctx: dict[str, object], n: int) -> None:
            running[name] += 1
            peak[name] = max(peak[name], running[name])
            runs.append((name, str(n)))
            await asyncio.sleep(0.01)
            running[name] -= 1

        return func(work, name="work")

    try:
        for n in range(60):
            await pool.enqueue_job("work", n, _job_id=f"{settings.redis_prefix}w{n}")
        workers = [
            ClaimingWorker(
                functions=[job(name)],
                queue_name=queue,
                redis_pool=pool,
                max_jobs=4,
                burst=True,
                poll_delay=0.01,
                handle_signals=False,
                keep_result=0,
            )
            for name in ("a", "b")
        ]
        await asyncio.wait_for(asyncio.gather(*(w.main() for w in workers)), 30)
        assert sorted(int(n) for _, n in runs) == list(range(60)), "each job ran exactly once"
        assert peak["a"] <= 4 and peak["b"] <= 4, "never more jobs than slots"
        assert {name for name, _ in runs} == {"a", "b"}
        assert all(w.job_counter == 0 for w in workers), "every slot handed back"
    finally:
        keys = [k async for k in redis.scan_iter(match=f"arq:*{settings.redis_prefix}*")]
        if keys:
            await redis.delete(*keys)
        await pool.aclose()


async def _noop(ctx: dict[str, object]) -> None:
    return None
