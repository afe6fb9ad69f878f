"""Scale-out on one machine: 2 web and 3 worker processes, the simulator, one Redis, 3 tenants.

Every webhook is delivered twice at the same moment, to different web replicas. The budget
covers only part of the work, so some contents end the test deferred. Checked: no event's
effect happens twice, every acknowledged event is either done or waiting its turn, the
simulator never spent more points than the budget allows (and never answered 429), and each
page's comments of one tenant follow the order of its versions with no gap.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from bench.stack import Driver, Stack
from tests.scale.harness import StackFactory, event_id, stamps, states

TENANTS, PAGES, VERSIONS = 3, 6, 6
BUDGET = 80  # points per hour; the load needs TENANTS * PAGES * VERSIONS = 108


def wait_off_the_hour() -> None:
    """The budget window is the UTC hour: do not straddle its end."""
    left = 3600 - time.time() % 3600
    if left < 60:
        time.sleep(left + 1)


async def send_all(stack: Stack, pages: list[str]) -> list[int]:
    driver = Driver(stack)
    statuses: list[int] = []

    async def one_content(tenant: str, page: str) -> None:
        for version in range(2, 2 + VERSIONS):
            # the same delivery twice at once, to two replicas (a retried webhook)
            statuses.extend(
                await asyncio.gather(
                    driver.send(tenant, page, version), driver.send(tenant, page, version)
                )
            )

    try:
        await asyncio.gather(*(one_content(t, p) for t in stack.tenants for p in pages))
    finally:
        await driver.aclose()
    return statuses


def settled(lines: dict[tuple[str, str], list[str]]) -> bool:
    """Every content is done, or done up to a deferred head with the rest waiting behind it."""
    for line in lines.values():
        k = next((i for i, s in enumerate(line) if s != "done"), len(line))
        if k < len(line) and (
            line[k] != "deferred" or any(s not in ("queued", "received") for s in line[k + 1 :])
        ):
            return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_two_webs_three_workers_many_tenants(make_stack: StackFactory) -> None:
    wait_off_the_hour()
    stack = make_stack(
        webs=2,
        workers=3,
        concurrency=8,
        env={
            "REACTOR_BUDGET_POINTS_PER_HOUR": str(BUDGET),
            "REACTOR_BUDGET_PACING": "false",
            "REACTOR_BUDGET_MAX_WAIT_SECONDS": "0.2",
            # no sweeps: a run spanning a minute's 7th second would start every tenant's
            # first sweep, whose searches spend from the same small budget as the reactions
            "REACTOR_RECONCILE_INTERVAL_SECONDS": "0",
        },
    )
    await stack.install(TENANTS)
    pages = await stack.pages(PAGES)
    await stack.faults(latency_ms=10)

    statuses = await send_all(stack, pages)
    assert Counter(statuses) == {204: 2 * TENANTS * PAGES * VERSIONS}

    ids = {
        (t, p): [event_id(t, p, v) for v in range(2, 2 + VERSIONS)]
        for t in stack.tenants
        for p in pages
    }
    every = [i for line in ids.values() for i in line]
    deadline = time.monotonic() + 40
    while True:
        found = await states(stack, every)
        lines = {key: [found[i] for i in line] for key, line in ids.items()}
        if settled(lines) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert settled(lines), lines
    assert "missing" not in found.values(), "an acknowledged event was lost"

    done = {i for i, s in found.items() if s == "done"}
    seen: list[str] = []
    for page in pages:
        on_page = await stamps(stack, page)
        seen.extend(e for _, _, e in on_page)
        for tenant in stack.tenants:
            versions = [v for t, v, _ in on_page if t == tenant]
            k = sum(1 for s in lines[(tenant, page)] if s == "done")
            assert versions == list(range(2, 2 + k)), (tenant, page, versions)
    assert len(seen) == len(set(seen)), "an event's effect happened twice"
    assert set(seen) == done

    counters = await stack.counters()
    assert counters["pointsSpent"] <= BUDGET, counters
    assert not any(" 429" in call for call in counters["calls"]), counters["calls"]
    assert len(done) >= BUDGET * 0.8, "the budget was used, not left idle"
    assert len(done) < len(every), "the load outgrew the budget, so deferral was exercised"
