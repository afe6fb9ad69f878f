"""EventQueue.put: one atomic script per event, dedupe, per-content line, Redis failures."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app import queue as queue_module
from app import redis as redis_conn
from app.atlassian.events import LABEL_WINDOW_MS, Event, from_connect, from_forge
from app.embedded_redis import free_port
from app.errors import QueueUnavailable
from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.pipeline.conftest import page_event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"


@pytest.mark.parametrize("batch", [True, False])
async def test_put_records_dedupes_and_lines_up_by_content(
    redis: Redis, settings: Settings, batch: bool
) -> None:
    queue = EventQueue(redis, settings, batch=batch)
    first, second, other = page_event(1, 1), page_event(1, 2), page_event(2, 1)
    assert [await queue.put(e) for e in (first, second, other, first)] == [True, True, True, False]
    assert await queue.get(second.id) == second
    keys = queue.keys
    queued = {m.decode() for m in await redis.zrange(keys.queue, 0, -1)}
    assert queued == {first.id, other.id}, "only the head of each content has a job"
    line = await redis.lrange(keys.content(first.content_key), 0, -1)  # type: ignore[misc]
    assert [i.decode() for i in line] == [first.id, second.id]
    log = EventLog(redis, settings)
    states = {e.id: (await log.record(e.id)).state for e in (first, second, other)}  # type: ignore[union-attr]
    assert states == {first.id: "queued", second.id: "received", other.id: "queued"}
    ttl = await redis.ttl(keys.dedupe(first.id))
    assert settings.dedupe_window_seconds - 5 < ttl <= settings.dedupe_window_seconds
    job = json.loads(await redis.get(keys.arq_job(first.id)))
    assert job["f"] == "process_event" and job["a"] == [first.id]


@pytest.mark.parametrize("state", ["queued", "deferred", "running"])
async def test_a_change_redelivered_after_the_dedupe_window_while_it_still_waits_is_a_duplicate(
    redis: Redis, settings: Settings, state: str
) -> None:
    """A site disabled for days keeps its events waiting past the dedupe window: the same
    change delivered again then must not enter its content's line a second time under the
    same id (the line would keep a head without a job, and the page's later events would
    never run)."""
    queue = EventQueue(redis, settings)
    first, later = page_event(31, 1), page_event(31, 2)
    assert await queue.put(first) is True
    await redis.hset(queue.keys.event(first.id), "state", state)  # type: ignore[misc]
    await redis.delete(queue.keys.dedupe(first.id))  # the window has passed
    assert await queue.put(first) is False
    assert await queue.put(later) is True
    line = await redis.lrange(queue.keys.content(first.content_key), 0, -1)  # type: ignore[misc]
    assert [i.decode() for i in line] == [first.id, later.id]
    record = await EventLog(redis, settings).record(first.id)
    assert record is not None and record.state == state and record.attempts == 0


async def test_concurrent_puts_share_round_trips_and_stay_exact(
    redis: Redis, settings: Settings
) -> None:
    queue = EventQueue(redis, settings)
    events = [page_event(n % 50, n) for n in range(400)]
    results = await asyncio.gather(*(queue.put(e) for e in [*events, *events[:100]]))
    assert results[:400] == [True] * 400
    assert results[400:] == [False] * 100
    assert await redis.zcard(queue.keys.events) == 400
    assert await redis.zcard(queue.keys.queue) == 50


async def test_the_same_change_from_both_routes_is_stored_once(
    redis: Redis, settings: Settings
) -> None:
    connect = json.loads((FIXTURES / "connect" / "page_updated.json").read_text())
    connect["page"]["id"] = "838205441"
    forge = json.loads((FIXTURES / "forge" / "updated_page.json").read_text())
    queue = EventQueue(redis, settings)
    assert await queue.put(from_forge("site-a", forge)) is True
    assert await queue.put(from_connect("site-a", "page_updated", connect)) is False
    assert await redis.zcard(queue.keys.events) == 1


async def test_a_flushed_script_cache_is_reloaded(redis: Redis, settings: Settings) -> None:
    for batch in (True, False):
        queue = EventQueue(redis, settings, batch=batch)
        await redis.script_flush()
        assert await queue.put(page_event(7, int(batch) + 1)) is True


def label_change(source: str, when_ms: int, label: str = "needs-review") -> Event:
    """One label added to page 838205441 of site-a, as ``source`` delivers it at ``when_ms``."""
    if source == "connect":
        body = json.loads((FIXTURES / "connect" / "label_added.json").read_text())
        body["labeled"]["id"] = body["labeled"]["idAsString"] = "838205441"
        body["label"]["name"] = label
        body["timestamp"] = when_ms
        return from_connect("site-a", "label_added", body)
    body = json.loads((FIXTURES / "forge" / "added_label.json").read_text())
    body["label"]["name"] = label
    moment = datetime.fromtimestamp(when_ms / 1000, tz=UTC)
    body["eventCreatedDate"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return from_forge("site-a", body)


# 50 s into a label window: 20 s later is the next window.
LATE_IN_A_WINDOW = 29_812_000 * LABEL_WINDOW_MS // 1000 + 50_000


@pytest.mark.parametrize("first", ["connect", "forge"])
async def test_a_label_change_from_both_routes_is_stored_once_across_windows(
    redis: Redis, settings: Settings, first: str
) -> None:
    other = "forge" if first == "connect" else "connect"
    early = label_change(first, LATE_IN_A_WINDOW)
    late = label_change(other, LATE_IN_A_WINDOW + 20_000)
    assert early.id != late.id, "the two deliveries fall in different windows"
    queue = EventQueue(redis, settings)
    assert await queue.put(early) is True
    assert await queue.put(late) is False, "the alias of the later one is the earlier one's id"
    assert await redis.zcard(queue.keys.events) == 1


async def test_distinct_label_changes_are_all_stored(redis: Redis, settings: Settings) -> None:
    queue = EventQueue(redis, settings)
    changes = [
        label_change("connect", LATE_IN_A_WINDOW),
        label_change("connect", LATE_IN_A_WINDOW, label="approved"),  # another label, same time
        label_change("forge", LATE_IN_A_WINDOW + 2 * LABEL_WINDOW_MS),  # the same label, later
    ]
    assert [await queue.put(e) for e in changes] == [True, True, True]
    assert await redis.zcard(queue.keys.events) == 3


@pytest.mark.parametrize("batch", [True, False])
async def test_redis_down_at_ingest_raises_queue_unavailable(
    settings: Settings, batch: bool
) -> None:
    client = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(QueueUnavailable):
            await EventQueue(client, settings, batch=batch).put(page_event(1, 1))
    finally:
        await client.aclose()


@pytest.mark.parametrize("batch", [True, False])
async def test_redis_slower_than_the_bound_raises_queue_unavailable(
    settings: Settings, silent_server: int, batch: bool
) -> None:
    slow = settings.model_copy(update={"ingest_timeout_seconds": 0.3})
    client = redis_conn.connect(f"redis://127.0.0.1:{silent_server}/0")
    started = time.monotonic()
    try:
        with pytest.raises(QueueUnavailable):
            await EventQueue(client, slow, batch=batch).put(page_event(1, 1))
    finally:
        await client.aclose()
    assert time.monotonic() - started < 2.0


async def test_a_connection_closed_by_redis_is_replaced(redis: Redis, settings: Settings) -> None:
    """A pooled connection Redis closed (restart, idle timeout) does not fail the next put."""
    client = redis_conn.connect(str(settings.redis_url))
    try:
        queue = EventQueue(client, settings)
        assert await queue.put(page_event(1, 1))
        name = f"q-{time.monotonic_ns()}"
        await client.client_setname(name)
        killed = 0
        for entry in await redis.client_list():
            if entry.get("name") == name or entry.get("cmd") in ("evalsha", "client|setname"):
                killed += await redis.client_kill_filter(_id=entry["id"])
        assert killed
        assert await queue.put(page_event(1, 2))
        assert await queue.put(page_event(1, 2)) is False
    finally:
        await client.aclose()


async def test_a_burst_goes_out_in_batches_of_flush_at(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = EventQueue(redis, settings)
    sizes: list[int] = []
    send = queue._eval

    async def counted(puts: list[bytes]) -> list[int]:
        sizes.append(len(puts))
        return await send(puts)

    monkeypatch.setattr(queue, "_eval", counted)
    burst = 2 * queue_module.FLUSH_AT + 3
    results = await asyncio.gather(*(queue.put(page_event(n, 1)) for n in range(burst)))
    assert results == [True] * burst
    assert sizes == [queue_module.FLUSH_AT, queue_module.FLUSH_AT, 3]
    assert await redis.zcard(queue.keys.events) == burst


async def test_a_batch_counts_its_activity_per_source(redis: Redis, settings: Settings) -> None:
    """Counted puts of one batch add received, accepted and duplicate once per source."""
    queue = EventQueue(redis, settings)
    connect = [page_event(n, 1) for n in range(5)]
    forge = replace(page_event(100, 1), id="ev_forge_1", source="forge")
    puts = [
        *(queue.put(e, count=True) for e in connect),
        queue.put(connect[0], count=True),  # duplicate in the same batch
        queue.put(forge, count=True),
        queue.put(page_event(200, 1)),  # not counted
    ]
    assert await asyncio.gather(*puts) == [True] * 5 + [False, True, True]
    totals: dict[str, int] = {}
    async for key in redis.scan_iter(match=f"{settings.redis_prefix}activity:*"):
        for name, value in (await redis.hgetall(key)).items():  # type: ignore[misc]
            totals[name.decode()] = totals.get(name.decode(), 0) + int(value)
        assert 0 < await redis.ttl(key) <= queue_module.ACTIVITY_KEEP_SECONDS
    assert totals == {
        "received:connect": 6,
        "accepted:connect": 6,
        "duplicate:connect": 1,
        "received:forge": 1,
        "accepted:forge": 1,
    }
