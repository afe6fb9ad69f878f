"""The simulated Confluence misbehaves: 5xx answers, calls that time out, 429 storms.

Each test runs a web process and a worker process with the stamp reaction (one comment per
page edit) and checks the designed outcome: 5xx answers are retried with backoff until the
call goes through; calls that never answer in time use up the attempts and dead-letter the
event, which an operator replays once Confluence is back (a replay joins the end of its
page's line); a 429 storm defers events without counting attempts. In every case each event
ends with exactly one comment or waits its turn: nothing is lost, nothing done twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from app import redis as redis_conn
from app.dlq import DeadLetters
from app.eventlog import EventLog
from bench.stack import Driver, Stack
from tests.scale.harness import StackFactory, event_id, stamps, states

PAGES, VERSIONS = 4, 3


async def load(stack: Stack, tenant: str, pages: list[str]) -> list[str]:
    driver = Driver(stack)
    try:
        for version in range(2, 2 + VERSIONS):
            for page in pages:
                assert await driver.send(tenant, page, version) == 204
    finally:
        await driver.aclose()
    return [event_id(tenant, p, v) for p in pages for v in range(2, 2 + VERSIONS)]


async def until_states(stack: Stack, ids: list[str], wanted: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while set((found := await states(stack, ids)).values()) - wanted:
        assert time.monotonic() < deadline, Counter(found.values())
        await asyncio.sleep(0.1)


async def exactly_once(
    stack: Stack, pages: list[str], ids: list[str], order: list[int] | None = None
) -> None:
    seen: list[str] = []
    for page in pages:
        on_page = await stamps(stack, page)
        assert [v for _, v, _ in on_page] == (order or list(range(2, 2 + VERSIONS))), on_page
        seen.extend(e for _, _, e in on_page)
    assert sorted(seen) == sorted(ids)


async def attempts(stack: Stack, ids: list[str]) -> list[str]:
    redis = redis_conn.connect(str(stack.redis_url))
    try:
        log = EventLog(redis, stack.settings())
        return [a.error for i in ids for a in await log.attempts(i)]
    finally:
        await redis.aclose()


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_server_errors_are_retried_until_they_succeed(make_stack: StackFactory) -> None:
    stack = make_stack(env={"REACTOR_RETRY_DELAYS": ",".join(["0.1"] * 9)})
    [tenant] = await stack.install(1)
    pages = await stack.pages(PAGES)
    await stack.faults(error_rate=0.3)
    ids = await load(stack, tenant, pages)
    await until_states(stack, ids, {"done"}, 30)
    await stack.faults(error_rate=0)  # so the test's own reads go through
    await exactly_once(stack, pages, ids)
    errors = await attempts(stack, ids)
    assert errors and all(e.startswith("ServerError") for e in errors), errors


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_calls_that_time_out_dead_letter_then_replay_once(make_stack: StackFactory) -> None:
    stack = make_stack(
        env={"REACTOR_JOB_TIMEOUT_SECONDS": "0.6", "REACTOR_RETRY_DELAYS": "0.1,0.1"}
    )
    [tenant] = await stack.install(1)
    pages = await stack.pages(PAGES)
    await stack.faults(latency_ms=1500)
    ids = await load(stack, tenant, pages)
    heads = [event_id(tenant, p, 2) for p in pages]
    await until_states(stack, heads, {"dead"}, 20)
    errors = await attempts(stack, heads)
    assert len(errors) == 3 * PAGES and all(e.startswith("TimeoutError") for e in errors)

    await stack.faults(latency_ms=0)
    redis = redis_conn.connect(str(stack.redis_url))
    try:
        assert sorted(await DeadLetters(redis, stack.settings()).retry_all()) == sorted(heads)
    finally:
        await redis.aclose()
    await until_states(stack, ids, {"done"}, 20)
    # a dead letter leaves its place in line: the page's later edits ran, the replay runs last
    await exactly_once(stack, pages, ids, order=[3, 4, 2])


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_429_storm_defers_without_using_attempts(make_stack: StackFactory) -> None:
    """A 429 storm defers for its Retry-After (no attempt used); then every event runs once."""
    stack = make_stack()
    [tenant] = await stack.install(1)
    pages = await stack.pages(PAGES)
    await stack.faults(storm429Seconds=2)
    ids = await load(stack, tenant, pages)
    heads = [event_id(tenant, p, 2) for p in pages]
    await until_states(stack, heads, {"deferred", "done"}, 10)
    redis = redis_conn.connect(str(stack.redis_url))
    try:
        records = await EventLog(redis, stack.settings()).records(heads)
    finally:
        await redis.aclose()
    deferred = [r for r in records if r.state == "deferred"]
    assert deferred, "the storm deferred events"
    # Deferred for the storm's Retry-After, not written off until the hour ends.
    assert all(
        r.next_run is not None and r.next_run <= time.time() * 1000 + 35_000 for r in deferred
    )
    await until_states(stack, ids, {"done"}, 40)
    assert await attempts(stack, ids) == [], "deferrals are not attempts"
    await exactly_once(stack, pages, ids)
    counters = await stack.counters()
    assert any(" 429" in call for call in counters["calls"]), counters
