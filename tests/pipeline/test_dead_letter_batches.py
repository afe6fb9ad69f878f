"""The dead-letter store at scale: what a listing or a bulk action reads and how many round
trips it takes, whatever the number of dead letters held."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from app import dlq as dlq_module
from app.atlassian.events import Event
from app.dlq import DeadLetters, Filter
from app.eventlog import EventLog
from app.settings import Settings
from tests.dashboard.helpers import count_reads, hold
from tests.pipeline.conftest import page_event

HELD = 1200  # more than two batches of the bulk actions


def many(count: int, *, every: int = 0, other: str = "site-b") -> list[Event]:
    """``count`` changes of distinct pages; every ``every``-th one of tenant ``other``."""
    return [page_event(n, 1, other if every and n % every == 0 else "site-a") for n in range(count)]


async def newest_deaths(redis: Redis, settings: Settings) -> list[str]:
    return [i.decode() for i in await redis.zrevrange(f"{settings.redis_prefix}dlq", 0, -1)]


async def test_listing_dead_letters_reads_only_what_it_returns(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = many(HELD, every=100)
    await hold(redis, settings, events, "dead")
    dlq = DeadLetters(redis, settings)
    order = await newest_deaths(redis, settings)
    reads = count_reads(monkeypatch)
    assert [r.id for r in await dlq.find(limit=1)] == order[:1]
    assert reads.whole == 0, "no record is read with its payload to list it"
    assert reads.round_trips <= 5, "one slice of small fields, not the whole store"
    reads.reset()
    of_b = {e.id for e in events if e.tenant == "site-b"}
    site_b = [i for i in order if i in of_b]
    found = await dlq.find(Filter(tenant="site-b"), limit=5)
    assert [r.id for r in found] == site_b[:5]
    assert all(r.tenant == "site-b" and r.state == "dead" for r in found)
    assert reads.whole == 0 and reads.round_trips <= 8
    reads.reset()
    whole = await dlq.find(Filter(tenant="site-b"), limit=5, payload=True)
    assert [r.id for r in whole] == site_b[:5] and reads.whole == 5
    assert all(r.event_json.startswith('{"id":') for r in whole)


async def test_retry_all_replays_thousands_in_a_few_round_trips_per_batch(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = many(HELD, every=3)
    await hold(redis, settings, events, "dead")
    dlq, log = DeadLetters(redis, settings), EventLog(redis, settings)
    reads = count_reads(monkeypatch)
    replayed = await dlq.retry_all(Filter(tenant="site-b"))
    assert sorted(replayed) == sorted(e.id for e in events if e.tenant == "site-b")
    assert reads.round_trips <= 30, f"{reads.round_trips} round trips for {HELD} dead letters"
    assert reads.whole == len(replayed), "only the letters replayed are read whole"
    assert await dlq.count() == HELD - len(replayed)
    record = await log.record(replayed[0])
    assert record is not None and (record.state, record.replays) == ("queued", 1)
    assert Event.from_json(record.event_json).source == "replay"
    reads.reset()
    assert len(await dlq.retry_all()) == HELD - len(replayed)
    assert reads.round_trips <= 30 and await dlq.count() == 0


async def test_discard_all_drops_thousands_in_a_few_round_trips_per_batch(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = many(HELD)
    await hold(redis, settings, events, "dead")
    dlq, log = DeadLetters(redis, settings), EventLog(redis, settings)
    reads = count_reads(monkeypatch)
    assert sorted(await dlq.discard_all()) == sorted(e.id for e in events)
    assert reads.round_trips <= 30 and reads.whole == 0
    assert await dlq.count() == 0
    record = await log.record(events[7].id)
    assert record is not None and record.state == "discarded"
    assert await dlq.discard_all() == [] and await dlq.discard_ids([events[7].id]) == []


async def test_bulk_replay_keeps_each_contents_order_across_batches(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Oldest death first, paged by (time of death, id): deaths in the same millisecond and
    letters replayed meanwhile neither repeat nor hide others."""
    monkeypatch.setattr(dlq_module, "BATCH", 2)
    log = EventLog(redis, settings)
    versions = [page_event(1, v) for v in range(1, 8)]
    others = [page_event(2 + n, 1) for n in range(5)]
    for n, event in enumerate(versions):  # each dies in turn, the next heads the line then
        await hold(redis, settings, [event], "dead")
        if n < len(others):  # likely in the same millisecond: a tie to page through
            await hold(redis, settings, [others[n]], "dead")
        await asyncio.sleep(0.003)  # a content's deaths are ordered by time (the index's)
    replayed = await DeadLetters(redis, settings).retry_all()
    assert sorted(replayed) == sorted(e.id for e in [*versions, *others])
    line = await redis.lrange(log.keys.content(versions[0].content_key), 0, -1)  # type: ignore[misc]
    assert [i.decode() for i in line] == [e.id for e in versions]


async def test_bulk_replay_waits_for_a_run_being_closed_and_names_what_it_left(
    redis: Redis, settings: Settings
) -> None:
    events, late = many(6), [page_event(50, 1), page_event(51, 1)]
    await hold(redis, settings, events, "dead")
    dlq = DeadLetters(redis, settings)
    closing = [f"arq:in-progress:{e.id}" for e in (events[2], late[0])]
    await redis.set(closing[0], b"1", px=300)
    try:
        assert sorted(await dlq.retry_all()) == sorted(e.id for e in events), "waited for it"
        await hold(redis, settings, late, "dead")
        await redis.set(closing[1], b"1", px=20_000)
        outcomes = await dlq.replay_ids([late[0].id, late[1].id, "nope"])
        assert list(outcomes.values()) == ["closing", "replayed", "not_dead"]
    finally:
        await redis.delete(*closing)
    record = await EventLog(redis, settings).record(late[0].id)
    assert record is not None and record.state == "dead", "left as it was"
