"""Redis killed and restarted (append-only file, fsync every second) under a stream of webhooks.

Senders post page edits to the web process without pause; Redis is killed with SIGKILL and
started again on the same port from its append-only file. While it is down ingest answers 503
with ``Retry-After`` (never a 500, never a hang); every event answered 2xx — before the crash
included — is processed exactly once after it, by the workers that were running all along.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from bench.stack import Driver, Stack
from tests.scale.harness import StackFactory, event_id, stamps, states

PAGES = 8


async def stream(
    stack: Stack, tenant: str, pages: list[str], stop: asyncio.Event
) -> dict[str, int]:
    """Edits of each page, one after another, until ``stop``; event id -> HTTP status."""
    driver = Driver(stack, timeout=5)
    answers: dict[str, int] = {}

    async def one_page(page: str) -> None:
        version = 1
        while not stop.is_set():
            version += 1
            answers[event_id(tenant, page, version)] = await driver.send(tenant, page, version)
            await asyncio.sleep(0.02)

    try:
        await asyncio.gather(*(one_page(p) for p in pages))
    finally:
        await driver.aclose()
    return answers


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_events_acknowledged_before_a_redis_crash_are_all_processed(
    make_stack: StackFactory,
) -> None:
    # claims of jobs cut off by the crash expire after the job timeout + 5 s
    env = {"REACTOR_INGEST_TIMEOUT_SECONDS": "1", "REACTOR_JOB_TIMEOUT_SECONDS": "3"}
    stack = make_stack(workers=1, env=env)
    assert stack.redis is not None and stack.redis.appendonly
    [tenant] = await stack.install(1)
    pages = await stack.pages(PAGES)
    stop = asyncio.Event()
    sending = asyncio.create_task(stream(stack, tenant, pages, stop))
    await asyncio.sleep(1.5)
    stack.redis.kill()
    crashed = time.monotonic()
    await asyncio.sleep(1.0)
    stack.redis.start()
    await asyncio.sleep(1.5)
    stop.set()
    answers = await sending

    statuses = Counter(answers.values())
    assert set(statuses) <= {204, 503}, statuses
    assert statuses[503] >= 1, "webhooks arrived while Redis was down"
    acked = [i for i, s in answers.items() if s == 204]
    assert len(acked) > 50

    deadline = time.monotonic() + 25
    while True:
        found = await states(stack, acked)
        if set(found.values()) == {"done"}:
            break
        assert time.monotonic() < deadline, Counter(found.values())
        await asyncio.sleep(0.2)
    assert time.monotonic() - crashed < 30

    seen: list[str] = []
    for page in pages:
        seen.extend(e for _, _, e in await stamps(stack, page))
    assert len(seen) == len(set(seen)), "an event took effect twice"
    assert set(acked) <= set(seen), "an acknowledged event was lost"


@pytest.mark.timeout(30)
async def test_redis_down_at_ingest_is_503_with_retry_after(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0, env={"REACTOR_INGEST_TIMEOUT_SECONDS": "1"})
    assert stack.redis is not None
    [tenant] = await stack.install(1)
    [page] = await stack.pages(1)
    driver = Driver(stack, timeout=5)
    try:
        assert await driver.send(tenant, page, 2) == 204  # the tenant is cached now
        stack.redis.kill()
        started = time.monotonic()
        answer = await driver.http.post(
            f"{stack.base_url}/connect/webhooks/page_updated",
            json={"page": {"id": page, "version": 3}},
            headers={"Authorization": f"JWT {driver.token(tenant)}"},
        )
        assert time.monotonic() - started < 3, "bounded by REACTOR_INGEST_TIMEOUT_SECONDS"
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert answer.json()["error"]
    finally:
        await driver.aclose()
