"""kill -9 of a worker process in the middle of its jobs: nothing lost, nothing done twice.

A worker process runs the stamp reaction (one footer comment per page edit) against the
simulator with 200 ms per API call, so it is killed with jobs in flight. Its claims expire
(``REACTOR_JOB_TIMEOUT_SECONDS`` + 5 s), a second worker runs those events again, and every
event ends ``done`` with exactly one comment, in version order per page.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from app import redis as redis_conn
from app.eventlog import EventLog
from bench.stack import Driver
from tests.scale.harness import StackFactory, event_id, stamps, states

PAGES, VERSIONS = 6, 4


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_kill_9_mid_job_loses_nothing_and_repeats_nothing(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(workers=1, concurrency=6, env={"REACTOR_JOB_TIMEOUT_SECONDS": "1"})
    [tenant] = await stack.install(1)
    pages = await stack.pages(PAGES)
    await stack.faults(latency_ms=200)
    driver = Driver(stack)

    async def one_page(page: str) -> list[int]:
        return [await driver.send(tenant, page, v) for v in range(2, 2 + VERSIONS)]

    answers = await asyncio.gather(*(one_page(p) for p in pages))
    await driver.aclose()
    assert Counter(s for page in answers for s in page) == {204: PAGES * VERSIONS}

    ids = [event_id(tenant, p, v) for p in pages for v in range(2, 2 + VERSIONS)]
    deadline = time.monotonic() + 15
    while True:
        count = Counter((await states(stack, ids)).values())
        if count["done"] >= PAGES and count["running"] >= 3:
            break  # worker0 dies with jobs in flight
        assert time.monotonic() < deadline, count
        await asyncio.sleep(0.02)
    stack.kill("worker0")
    stack.start_worker(1)  # a replacement takes over once the dead worker's claims expire

    deadline = time.monotonic() + 30
    while set((found := await states(stack, ids)).values()) != {"done"}:
        assert time.monotonic() < deadline, Counter(found.values())
        await asyncio.sleep(0.2)

    seen: list[str] = []
    for page in pages:
        on_page = await stamps(stack, page)
        assert [v for _, v, _ in on_page] == list(range(2, 2 + VERSIONS)), (page, on_page)
        seen.extend(e for _, _, e in on_page)
    assert sorted(seen) == sorted(ids), "every event took effect exactly once"

    redis = redis_conn.connect(str(stack.redis_url))
    try:
        log = EventLog(redis, stack.settings())
        interrupted = [
            i for i in ids if any(a.outcome == "interrupted" for a in await log.attempts(i))
        ]
    finally:
        await redis.aclose()
    assert interrupted, "some event was run again after the kill"
