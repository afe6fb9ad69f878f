"""The cron tick sweeps a few tenants at a time, most urgent first, within its deadline (QA 11,
M5: tenants were swept one after another, so slow Confluence calls left most due tenants for
later ticks, and more workers did not help)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from app.reconcile_plan import failure_wait_seconds
from app.settings import Settings
from tests.reconcile.fakes import START, Clock, world
from workers.reconcile_runtime import Runtime, sweep_due

TENANTS = ["t1", "t2", "t3", "t4", "t5", "t6"]  # most urgent first (oldest watermarks)
GATE_SECONDS = 3.0  # only ever waited out if sweeps run one after another (the bug)


async def _swept_long_ago(rt: Runtime, tenants: list[str]) -> None:
    """Due, in this order (oldest watermarks first); their trash listings are not due."""
    state = rt.sweeper.state
    for n, tenant in enumerate(tenants):
        await state.set_watermark(tenant, n + 1)
        await state.abandon_trash(tenant, int(START * 1000))


async def test_a_tick_sweeps_tenants_at_once_most_urgent_first_and_survives_a_failing_one(
    redis: Redis, settings: Settings
) -> None:
    async with world(redis, settings, ["bad", *TENANTS]) as (rt, confluence, _, _):
        await _swept_long_ago(rt, ["bad", *TENANTS])
        confluence.sites["bad"].refuse = True  # the most urgent tenant fails at once
        started: list[str] = []
        active = most = 0
        gate = asyncio.Event()

        async def hold(tenant: str) -> None:
            """Each search waits until three are in flight: slow calls, overlapping."""
            nonlocal active, most
            if tenant == "bad":
                return  # answered 401 at once
            started.append(tenant)
            active += 1
            most = max(most, active)
            if active >= 3:
                gate.set()
            try:
                await asyncio.wait_for(gate.wait(), GATE_SECONDS)
            except TimeoutError:
                pass
            finally:
                active -= 1

        confluence.hook = hold
        done = await sweep_due(rt, at_once=3)
    assert done["bad"] == {"error": "Unauthorized"}
    assert all(done[t]["complete"] for t in TENANTS)
    assert gate.is_set() and most == 3  # three sweeps at a time, never more
    assert set(started[:3]) == {"t1", "t2", "t3"}  # the most urgent first
    assert set(started[3:]) == {"t4", "t5", "t6"}


async def test_a_tick_starts_no_sweep_after_its_deadline(redis: Redis, settings: Settings) -> None:
    monotonic = Clock(0.0)
    async with world(redis, settings, TENANTS) as (rt, confluence, _, _):
        await _swept_long_ago(rt, TENANTS)

        async def slow(tenant: str) -> None:
            monotonic.now += 30  # each sweep takes 30 s

        confluence.hook = slow
        assert await sweep_due(rt, seconds=0, clock=monotonic) == {}
        done = await sweep_due(rt, seconds=45, at_once=3, clock=monotonic)
    assert set(done) == {"t1", "t2", "t3"}  # started together; 90 s later none starts


async def test_a_tenant_whose_turns_fail_waits_longer_each_time_then_runs_again(
    redis: Redis, settings: Settings
) -> None:
    """A site that refuses the app (a 401 on every call) would otherwise be the most urgent
    tenant at every tick (its sweep stays unfinished) and take a slot and points each minute."""
    async with world(redis, settings, ["bad", "good"]) as (rt, confluence, clock, _):
        await _swept_long_ago(rt, ["bad", "good"])
        confluence.sites["bad"].refuse = True
        assert (await sweep_due(rt))["bad"] == {"error": "Unauthorized"}
        assert await rt.sweeper.state.failures("bad") == (1, int(clock.now * 1000))
        waits = []
        for failures in (1, 2, 3):
            clock.now += 30
            assert "bad" not in await sweep_due(rt), "waits after a failed turn"
            wait = failure_wait_seconds(failures)
            clock.now += wait - 30
            assert (await sweep_due(rt))["bad"] == {"error": "Unauthorized"}
            waits.append(wait)
        assert waits == [60, 120, 240]
        assert failure_wait_seconds(30) == 3600
        confluence.sites["bad"].refuse = False  # the site takes the app back
        clock.now += failure_wait_seconds(4)
        done = await sweep_due(rt)
        assert done["bad"]["complete"]
        assert await rt.sweeper.state.failures("bad") is None
