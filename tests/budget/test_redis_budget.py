"""RedisBudget on a real Redis: reservation, settlement, headers, pauses, hours, fairness."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app import redis as redis_conn
from app.budget.hook import BudgetExhausted, Observation, Priority
from app.budget.model import HOUR, Usage
from app.confluence.ratelimit import observe
from app.embedded_redis import EmbeddedRedis
from app.errors import Defer
from app.settings import Settings
from tests.budget.helpers import T0, FakeClock, budget

OK = Observation(status=200)
P = Priority.REACTION


async def test_reserve_charges_and_settle_reconciles(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    r1 = await b.reserve("acme", 26, P)
    r2 = await b.reserve("beta", 2, Priority.INTERACTIVE)
    snap = await b.snapshot()
    assert (snap.charged, snap.reserved, snap.spent, snap.remaining) == (28, 28, 0, 972)
    await b.settle(r1, Observation(status=200, actual_cost=4))
    await b.settle(r2, OK)
    snap = await b.snapshot()
    assert (snap.charged, snap.reserved, snap.spent, snap.remaining) == (6, 0, 6, 994)
    assert snap.tenants["acme"].spent == 4 and snap.tenants["beta"].spent == 2
    assert snap.priorities[int(P)].spent == 4 and snap.priorities[0].spent == 2
    keys = [k.decode() async for k in redis.scan_iter(match="*budget*")]
    assert keys and all(k.startswith(settings.redis_prefix) for k in keys)
    hour_key = f"{settings.redis_prefix}budget:h:{int(T0 * 1000)}"
    ttl = await redis.pttl(hour_key)
    assert 0 < ttl <= (HOUR + HOUR - 600) * 1000, "the hour's counters expire with it"


async def test_exhausted_hour_defers_until_the_reset(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0 + HOUR - 10)
    b = budget(redis, settings, clock)
    await b.reserve("acme", 1000, Priority.INTERACTIVE)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("acme", 1, Priority.INTERACTIVE)
    clock.now += 5
    assert (await b.snapshot()).forecast == pytest.approx(T0 + HOUR - 10)  # when it ran out
    assert isinstance(info.value, Defer)
    assert info.value.retry_at == T0 + HOUR and info.value.delay == pytest.approx(10)
    assert info.value.reason == "quota"


async def test_hour_boundary_starts_a_fresh_quota(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0 + HOUR - 0.5)
    b = budget(redis, settings, clock)
    late = await b.reserve("acme", 900, Priority.INTERACTIVE)
    with pytest.raises(BudgetExhausted):
        await b.reserve("acme", 200, Priority.INTERACTIVE)
    clock.now = T0 + HOUR
    fresh = await b.reserve("acme", 200, Priority.INTERACTIVE)
    # a call reserved at 14:59:59.5 settles after 15:00: it corrects the old hour only
    await b.settle(late, Observation(status=200, actual_cost=10))
    await b.settle(fresh, OK)
    snap = await b.snapshot()
    assert snap.hour_start == T0 + HOUR
    assert (snap.charged, snap.reserved) == (200, 0)
    old = await redis.hget(f"{settings.redis_prefix}budget:h:{int(T0 * 1000)}", "charged")  # type: ignore[misc]
    assert int(old) == 10


async def test_priority_reserve_and_release(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0 + 600)
    b = budget(redis, settings, clock)
    await b.reserve("a", 900, P)  # REACTION may use 950 (5% kept for INTERACTIVE)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("a", 60, P)
    assert info.value.reason == "reserve"
    # 40 points of room; the 50-point reserve drops below 40 at 240 s before the reset
    assert info.value.retry_at == pytest.approx(T0 + HOUR - 240, abs=0.01)
    with pytest.raises(BudgetExhausted):
        await b.reserve("a", 1, Priority.RECONCILE)  # RECONCILE stops at 900
    clock.now = info.value.retry_at
    await b.reserve("a", 60, P)
    await b.reserve("a", 40, Priority.INTERACTIVE)


async def test_pacing_spreads_the_hour(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=36, reserve_fraction=0.1)
    for _ in range(9):  # 36 s lead of a 900-point hour (1000 less the reserve) = 9 points
        await b.reserve("a", 1, P)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("a", 1, P)
    assert info.value.reason == "pacing"
    assert info.value.retry_at == pytest.approx(T0 + 4.0, abs=0.01)
    await b.reserve("a", 1, Priority.INTERACTIVE)  # the top priority runs on the 1000 line
    with pytest.raises(BudgetExhausted):
        await b.reserve("a", 1, Priority.INTERACTIVE)
    clock.now = T0 + 1800
    await b.reserve("a", 449, P)  # 900 x (1800 + 36) / 3600 = 459 by now
    with pytest.raises(BudgetExhausted):
        await b.reserve("a", 1, P)


async def test_short_waits_happen_in_process(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock, burst_per_second=10, max_wait_seconds=1.0)
    for _ in range(10):
        await b.reserve("a", 1, P)
    assert clock.slept == []
    await b.reserve("a", 1, P)
    assert clock.slept == [pytest.approx(0.1, abs=0.002)]
    clock.slept.clear()
    clock.now += 2
    strict = budget(redis, settings, clock, burst_per_second=10, max_wait_seconds=0)
    for _ in range(10):
        await strict.reserve("a", 1, P)
    with pytest.raises(BudgetExhausted) as info:
        await strict.reserve("a", 1, P)
    assert info.value.reason == "burst" and info.value.delay <= 1.0


async def test_lower_server_remaining_is_adopted(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    r = await b.reserve("a", 2, P)
    await b.settle(r, Observation(status=200, remaining=600, limit=1000))
    snap = await b.snapshot()
    assert (snap.charged, snap.external, snap.remaining) == (2, 398, 600)
    # the minute series (the Budget page's burn chart) adds up to what the hour spent
    hour = await redis.hgetall(f"{settings.redis_prefix}budget:h:{int(snap.hour_start * 1000)}")
    minutes = sum(int(v) for k, v in hour.items() if k.decode().startswith("m:"))
    assert minutes == snap.charged + snap.external == 400
    # a higher figure (the server has not seen our in-flight calls yet) changes nothing
    r = await b.reserve("a", 2, P)
    await b.settle(r, Observation(status=200, remaining=900))
    snap = await b.snapshot()
    assert (snap.external, snap.remaining) == (398, 598)
    with pytest.raises(BudgetExhausted):
        await b.reserve("a", 599, Priority.INTERACTIVE)


async def test_a_request_counter_is_not_taken_for_the_quota(
    redis: Redis, settings: Settings
) -> None:
    b = budget(redis, settings, FakeClock())
    r = await b.reserve("a", 2, P)
    await b.settle(r, Observation(status=200, limit=60, remaining=10))
    snap = await b.snapshot()
    assert (snap.quota, snap.external, snap.remaining) == (1000, 0, 998)


async def test_lower_server_limit_and_near_limit(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0 + 360)  # a tenth of the hour
    b = budget(redis, settings, clock, pacing=False, pacing_lead_seconds=0, reserve_fraction=0)
    r = await b.reserve("a", 50, P)
    await b.settle(r, Observation(status=200, limit=800, near_limit=True))
    snap = await b.snapshot()
    assert snap.quota == 800 and snap.near_limit
    # NearLimit turns pacing on for lower priorities: 80 of 800 by now, 50 spent
    await b.reserve("a", 30, P)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("a", 1, P)
    assert info.value.reason == "pacing"


async def test_near_limit_halves_the_burst_rate(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock, burst_per_second=10, max_wait_seconds=0)
    r = await b.reserve("a", 1, Priority.INTERACTIVE)
    await b.settle(r, Observation(status=200, near_limit=True))
    admitted = 1
    clock.now += 2.0  # the bucket is full again
    while True:
        try:
            await b.reserve("a", 1, Priority.INTERACTIVE)
        except BudgetExhausted as exc:
            assert exc.reason == "burst"
            break
        admitted += 1
    assert admitted == 1 + 5


async def test_a_429_pauses_every_instance_until_retry_after(
    redis: Redis, settings: Settings
) -> None:
    assert settings.redis_url is not None
    clients = [redis_conn.connect(settings.redis_url) for _ in range(4)]
    try:
        clock = FakeClock()
        budgets = [budget(c, settings, clock) for c in clients]
        r = await budgets[0].reserve("a", 1, P)
        await budgets[0].settle(
            r,
            Observation(status=429, retry_after=30, reason="confluence-quota-global-based"),
        )
        for i, b in enumerate(budgets):
            with pytest.raises(BudgetExhausted) as info:
                await b.reserve(f"t{i}", 1, Priority.INTERACTIVE)
            assert info.value.reason == "paused"
            assert info.value.retry_at == pytest.approx(clock.now + 30)
        snap = await budgets[3].snapshot()
        assert snap.n429 == 1 and snap.paused_until == pytest.approx(clock.now + 30)
        assert snap.remaining > 0, "a wait that ends well before the hour is only a pause"
        clock.now += 30
        await budgets[1].reserve("a", 1, Priority.INTERACTIVE)
    finally:
        for c in clients:
            await c.aclose()


@pytest.mark.parametrize("retry_after", [None, HOUR - 600 - 30])
async def test_a_quota_429_waiting_until_the_reset_writes_the_hour_off(
    redis: Redis, settings: Settings, retry_after: float | None
) -> None:
    clock = FakeClock()  # ten minutes into the hour
    b = budget(redis, settings, clock)
    r = await b.reserve("a", 1, P)
    reason = "confluence-quota-global-based"
    await b.settle(r, Observation(status=429, retry_after=retry_after, reason=reason))
    snap = await b.snapshot()
    assert snap.remaining == 0, "the server's hour is spent"
    ran_out = clock.now
    assert snap.forecast == pytest.approx(ran_out, abs=0.01)  # when, not "now"
    clock.now += HOUR - 600 - 20  # past any pause, still in the hour
    assert (await b.snapshot()).forecast == pytest.approx(ran_out, abs=0.01)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("a", 1, Priority.INTERACTIVE)
    assert info.value.reason == "quota" and info.value.retry_at == T0 + HOUR


async def test_429_storm_keeps_the_longest_pause(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    reservations = [await b.reserve("a", 1, P) for _ in range(40)]
    waits = [1 + (i * 7) % 23 for i in range(40)]
    await asyncio.gather(
        *(
            b.settle(r, Observation(status=429, retry_after=w, reason="confluence-burst-based"))
            for r, w in zip(reservations, waits, strict=True)
        )
    )
    snap = await b.snapshot()
    assert snap.n429 == 40 and snap.paused_until == pytest.approx(clock.now + max(waits))
    assert snap.charged == 0, "429s are not charged and burst 429s do not zero the hour"
    clock.now += max(waits) - 0.01
    with pytest.raises(BudgetExhausted):
        await b.reserve("a", 1, P)
    clock.now += 0.01
    await b.reserve("a", 1, P)


async def test_real_time_pause_with_redis_clock(redis: Redis, settings: Settings) -> None:
    b = budget(redis, settings, None)
    other = budget(redis, settings, None)
    r = await b.reserve("a", 1, P)
    await b.settle(r, Observation(status=429, retry_after=1.2, reason="confluence-burst-based"))
    with pytest.raises(BudgetExhausted) as info:
        await other.reserve("b", 1, P)
    assert 0 < info.value.delay <= 1.201
    await asyncio.sleep(1.25)
    await other.reserve("b", 1, P)


async def test_tenant_429_pauses_only_that_tenant(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    r = await b.reserve("acme", 1, P)
    await b.settle(
        r, Observation(status=429, retry_after=60, reason="confluence-quota-tenant-based")
    )
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("acme", 1, P)
    assert info.value.reason == "tenant-paused"
    await b.reserve("beta", 1, P)
    scans = await scan_calls(redis)
    assert set((await b.snapshot()).tenant_pauses) == {"acme"}
    # Listed without a SCAN: one walks every key of the database, and the snapshot is taken
    # on every metrics scrape and every live dashboard push.
    assert await scan_calls(redis) == scans
    clock.now += 61
    assert (await b.snapshot()).tenant_pauses == {}


async def scan_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


async def test_tenant_quota(redis: Redis, settings: Settings) -> None:
    b = budget(redis, settings, FakeClock(), tenant_points_per_hour=100)
    await b.reserve("acme", 100, P)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("acme", 1, P)
    assert info.value.reason == "tenant-quota"
    await b.reserve("beta", 100, P)


async def test_backlogged_light_tenant_holds_back_the_heavy_one(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0)
    clock.now = T0 + 360  # 100 points paced so far
    for _ in range(100):
        await b.reserve("heavy", 1, P)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("light", 1, P)  # denied by pacing: light is now backlogged
    assert info.value.reason == "pacing"
    clock.now += 18  # 5 more points, within the 30 s backlog window
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("heavy", 1, P)
    assert info.value.reason == "fair-share"
    assert info.value.delay <= 30
    for _ in range(5):
        await b.reserve("light", 1, P)
    snap = await b.snapshot()
    assert set(snap.backlogged) == {"heavy", "light"}
    clock.now += 4
    await b.set_weight("heavy", 100)  # a weight of 100 entitles it to 100x the share
    await b.reserve("heavy", 1, P)
    await b.set_weight("heavy", 1)
    with pytest.raises(BudgetExhausted):
        await b.reserve("heavy", 1, P)
    # with nobody else waiting the heavy tenant gets what is left
    clock.now += 40
    await b.reserve("heavy", 1, P)


async def test_a_light_tenant_paced_a_while_yet_still_holds_the_heavy_one_back(
    redis: Redis, settings: Settings
) -> None:
    """Light's reaction is refused by the pacing line until some seconds from now; heavy's
    interactive calls pass their own, higher line before that. Were light not to hold heavy
    back, heavy would take every point the lines release and light would never get its
    share (the budget benchmark's fairness fell from 1.0 to 0.3 that way)."""
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0.2)
    clock.now = T0 + 360  # an interactive line of 100 points, a reaction line of 80
    for _ in range(80):
        await b.reserve("heavy", 1, P)
    with pytest.raises(BudgetExhausted) as light:
        await b.reserve("light", 1, P)
    assert light.value.reason == "pacing" and light.value.delay > 2  # beyond the grace
    with pytest.raises(BudgetExhausted) as heavy:
        await b.reserve("heavy", 1, Priority.INTERACTIVE)
    assert heavy.value.reason == "fair-share"


async def test_a_tenant_gone_while_it_waited_holds_nobody_back(
    redis: Redis, settings: Settings
) -> None:
    """Uninstalled while its jobs waited for budget: they end without reserving again, so its
    mark would hold the others back for the whole backlog window."""
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0)
    clock.now = T0 + 360
    for _ in range(100):
        await b.reserve("heavy", 1, P)
    with pytest.raises(BudgetExhausted):
        await b.reserve("light", 1, P)  # light now waits
    clock.now += 18
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("heavy", 1, P)
    assert info.value.reason == "fair-share"
    await b.forget_waiting("light")
    await b.reserve("heavy", 1, P)
    assert "light" not in (await b.snapshot()).backlogged


async def test_forecast_from_the_recent_rate(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0 + 600)
    b = budget(redis, settings, clock)
    for minute in range(5):  # 60 points a minute over the last five minutes
        clock.now = T0 + 360 + minute * 60
        await b.reserve("a", 60, Priority.INTERACTIVE)
    clock.now = T0 + 600
    snap = await b.snapshot()
    # 300 of 1000 spent; 1 point/s over the last 300 s -> 700 s to go
    assert snap.forecast == pytest.approx(T0 + 600 + 700)


async def test_fair_shares_can_be_switched_off(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0 + 360)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0)
    b.config = dataclasses.replace(b.config, backlog_window_seconds=0)
    for _ in range(100):
        await b.reserve("heavy", 1, P)
    with pytest.raises(BudgetExhausted):
        await b.reserve("light", 1, P)
    clock.now += 18
    for _ in range(5):  # first come, first served
        await b.reserve("heavy", 1, P)
    assert (await b.snapshot()).backlogged == ()


async def test_a_later_settlement_does_not_need_the_script_loaded(
    settings: Settings, tmp_path: Path
) -> None:
    """A Redis that lost its scripts (restarted, flushed) still takes a later settlement."""
    server = EmbeddedRedis(tmp_path / "fresh")
    server.start()
    fresh = redis_conn.connect(server.url)
    try:
        b = budget(fresh, settings, FakeClock())
        reservation = await b.reserve("acme", 26, P)  # loads the reserve script only
        later = b.settle_later(reservation, Observation(status=200, actual_cost=4))
        assert later is not None
        async with fresh.pipeline(transaction=False) as pipe:
            later(pipe)
            [result] = await pipe.execute(raise_on_error=False)  # as the job layer sends it
        assert not isinstance(result, Exception), result
        snap = await b.snapshot()
        assert (snap.charged, snap.reserved, snap.spent) == (4, 0, 4)
    finally:
        await fresh.aclose()
        server.stop()


async def test_a_plain_success_may_settle_later_with_the_same_effect(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    reservation = await b.reserve("acme", 26, P)
    later = b.settle_later(reservation, Observation(status=201, actual_cost=4))
    assert later is not None
    assert (await b.snapshot()).reserved == 26, "the estimate stays reserved until it is sent"
    async with redis.pipeline(transaction=False) as pipe:
        later(pipe)
        await pipe.execute()
    snap = await b.snapshot()
    assert (snap.charged, snap.reserved, snap.spent) == (4, 0, 4)
    assert snap.tenants["acme"].spent == 4
    # what every process must learn at once is never left for later
    for urgent in (
        Observation(status=429, retry_after=30),
        Observation(status=200, near_limit=True),
        Observation(status=200, retry_after=5),
        Observation(status=500),
    ):
        assert b.settle_later(await b.reserve("acme", 1, P), urgent) is None


async def test_a_dead_workers_reservation_leaves_in_flight_after_its_time(
    redis: Redis, settings: Settings
) -> None:
    """A worker killed mid-call never settles: its estimate stays charged (the call may have
    reached Confluence) but stops counting as in flight once it could no longer be."""
    clock = FakeClock()
    b = budget(redis, settings, clock, inflight_seconds=120)
    await b.reserve("acme", 5, P)  # the worker dies here
    snap = await b.snapshot()
    assert (snap.charged, snap.reserved) == (5, 5)
    clock.now += 60
    alive = await b.reserve("beta", 2, P)  # still within its time: kept
    assert (await b.snapshot()).reserved == 7
    clock.now += 61
    late = await b.reserve("beta", 1, P)  # 121 s after the first: it is given back
    snap = await b.snapshot()
    assert (snap.charged, snap.reserved) == (8, 3)
    assert snap.tenants["acme"] == Usage(charged=5, reserved=0)
    await b.settle(alive, OK)
    await b.settle(late, OK)
    snap = await b.snapshot()
    assert (snap.charged, snap.reserved, snap.spent) == (8, 0, 8)


async def test_a_settlement_after_the_reclaim_does_not_give_back_twice(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock, inflight_seconds=30)
    slow = await b.reserve("acme", 4, P)
    clock.now += 31
    await b.reserve("acme", 1, P)  # reclaims the slow one
    await b.settle(slow, Observation(status=200, actual_cost=2))  # it was alive after all
    snap = await b.snapshot()
    assert snap.reserved == 1 and snap.charged == 3  # 2 (actual) + 1 (in flight)
    assert snap.tenants["acme"] == Usage(charged=3, reserved=1)


async def test_a_tenant_waiting_for_later_does_not_hold_back_those_that_can_go_now(
    redis: Redis, settings: Settings
) -> None:
    """Light's sweep is refused by the reserve for 45 minutes, its list by what is left:
    neither could use points now, so heavy's reactions that fit still go."""
    clock = FakeClock(T0 + 600)
    b = budget(redis, settings, clock, backlog_window_seconds=30)
    await b.settle(await b.reserve("heavy", 880, P), OK)
    await b.settle(await b.reserve("light", 20, P), OK)
    with pytest.raises(BudgetExhausted) as sweep:
        await b.reserve("light", 5, Priority.RECONCILE)  # only the top priorities may pass 900
    assert sweep.value.reason == "reserve" and sweep.value.delay > 600
    with pytest.raises(BudgetExhausted) as listing:
        await b.reserve("light", 251, P)
    assert listing.value.reason == "quota"
    for minute in (0, 10, 20):
        clock.now = T0 + 600 + minute * 60
        with pytest.raises(BudgetExhausted):
            await b.reserve("light", 5, Priority.RECONCILE)  # comes back, refused again
        await b.settle(await b.reserve("heavy", 2, P), OK)
    assert (await b.snapshot()).tenants["heavy"].spent == 886


async def test_a_burst_rate_below_one_call_a_second_still_admits_calls(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock(T0 + 60)
    b = budget(redis, settings, clock, burst_per_second=0.5, max_wait_seconds=0)
    admitted = 0
    for _ in range(20):
        try:
            await b.settle(await b.reserve("acme", 1, P), OK)
            admitted += 1
        except BudgetExhausted as exc:
            assert exc.reason == "burst" and exc.delay <= 2.0
        clock.now += 0.5
    assert admitted == 5  # one every 2 s over 10 s


def test_fair_shares_can_be_switched_off_in_settings(settings: Settings) -> None:
    off = settings.model_validate({**settings.model_dump(), "budget_backlog_window_seconds": 0})
    assert off.budget_backlog_window_seconds == 0


async def test_a_429_of_one_site_s_own_quota_pauses_that_site_alone(
    redis: Redis, settings: Settings
) -> None:
    """Its figures name the tenant's policy (``tenant-app-quota``) though no reason header
    says so: the other sites keep going."""
    clock = FakeClock(T0 + 60)
    b = budget(redis, settings, clock)
    r = await b.reserve("acme", 2, P)
    await b.settle(r, Observation(status=429, retry_after=1200, tenant_scoped=True))
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("acme", 2, P)
    assert info.value.reason == "tenant-paused"
    await b.settle(await b.reserve("beta", 2, P), OK)


async def test_a_server_s_wait_is_believed_up_to_two_hours(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock(T0 + 60)
    b = budget(redis, settings, clock)
    r = await b.reserve("acme", 2, P)
    await b.settle(r, Observation(status=429, retry_after=1e9, reason="confluence-quota-global"))
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("acme", 2, P)
    assert info.value.delay <= 2 * 3600


async def test_the_last_hour_s_figures_at_the_top_of_the_hour_are_not_learned(
    redis: Redis, settings: Settings
) -> None:
    """Confluence counts a call by its own clock: served a moment before its hour ends, the
    response still reports the old window (nearly spent, resetting now). Those figures say
    nothing of the hour Redis has already started."""
    new_hour = T0 + HOUR
    clock = FakeClock(new_hour + 0.2)  # Redis's clock a little ahead of Confluence's
    b = budget(redis, settings, clock, points_per_hour=65000)
    r = await b.reserve("acme", 2, Priority.INTERACTIVE)
    reset = datetime.fromtimestamp(new_hour, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    headers = [
        ("X-RateLimit-Limit", "65000"),
        ("X-RateLimit-Remaining", "40"),
        ("X-RateLimit-Reset", reset),
        ("X-RateLimit-NearLimit", "true"),
    ]
    await b.settle(r, observe(200, headers, now=new_hour - 0.1, actual_cost=2))
    snap = await b.snapshot()
    assert (snap.charged, snap.external, snap.near_limit) == (2, 0, False)
    clock.now = new_hour + 60
    await b.reserve("acme", 2, P)
    # The same figures with no reset time at all, still in the hour's first seconds: not
    # learned either; later in the hour, figures that reset at its end are.
    r = await b.reserve("acme", 2, P)
    clock.now = new_hour + 1
    await b.settle(r, Observation(status=200, limit=65000, remaining=40, near_limit=True))
    assert (await b.snapshot()).external == 0
    clock.now = new_hour + 600
    r = await b.reserve("acme", 2, P)
    await b.settle(r, Observation(status=200, remaining=60000, reset_epoch=new_hour + HOUR))
    assert (await b.snapshot()).remaining == 60000


async def test_a_quota_429_from_the_last_hour_does_not_write_the_new_one_off(
    redis: Redis, settings: Settings
) -> None:
    new_hour = T0 + HOUR
    clock = FakeClock(new_hour + 0.5)
    b = budget(redis, settings, clock)
    r = await b.reserve("acme", 2, P)
    reason = "confluence-quota-global-based"
    await b.settle(r, Observation(status=429, reason=reason, reset_epoch=new_hour))
    snap = await b.snapshot()
    assert snap.remaining > 990 and snap.paused_until is not None  # a pause, not the hour


async def test_a_sweep_waiting_on_its_pacing_line_does_not_hold_back_reactions(
    redis: Redis, settings: Settings
) -> None:
    """The sweep comes last: a site whose sweep call waits for its own (lower) pacing line
    leaves the points to other sites' reactions that fit theirs, rather than leave them idle;
    a site waiting with a reaction still holds the others back (fair shares)."""
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0.2)
    clock.now = T0 + 360  # lines: interactive 100, reaction 80, sweep 60
    for _ in range(70):
        await b.reserve("heavy", 1, P)
    with pytest.raises(BudgetExhausted) as sweep:
        await b.reserve("light", 1, Priority.RECONCILE)
    assert sweep.value.reason == "pacing" and sweep.value.delay > 30
    assert "light" in (await b.snapshot()).backlogged
    for _ in range(5):
        await b.reserve("heavy", 1, P)
        await b.reserve("heavy", 1, Priority.INTERACTIVE)
    with pytest.raises(BudgetExhausted) as reaction:
        await b.reserve("light", 1, P)  # 81 > 80: now light waits with a reaction
    assert reaction.value.reason == "pacing"
    with pytest.raises(BudgetExhausted) as held:
        await b.reserve("heavy", 1, Priority.INTERACTIVE)
    assert held.value.reason == "fair-share"


async def _commands_run(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def test_a_reservation_s_work_does_not_grow_with_the_sites_waiting(
    redis: Redis, settings: Settings
) -> None:
    """Every site with work waits when points are scarce (pacing is global): with hundreds
    waiting, one reservation must not read each of them inside the script, which holds up
    every other client of this Redis (the queue, the webhook intake) meanwhile."""
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0)
    clock.now = T0 + 360  # a line of 100 points
    await b.reserve("heavy", 100, P)
    for i in range(400):
        with pytest.raises(BudgetExhausted):
            await b.reserve(f"site-{i}", 1, P)
    assert len((await b.snapshot()).backlogged) == 400
    clock.now += 6  # the line passes 101: heavy's call fits it, but 400 sites spent less
    before = await _commands_run(redis)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("heavy", 1, Priority.INTERACTIVE)
    assert info.value.reason == "fair-share"
    assert await _commands_run(redis) - before < 80
    clock.now += 3  # the line passes 102: each waiting site gets its point before heavy
    await b.settle(await b.reserve("site-7", 1, P), OK)
    before = await _commands_run(redis)
    await b.settle(await b.reserve("site-8", 1, P), OK)
    assert await _commands_run(redis) - before < 80


async def test_a_site_waiting_at_the_hour_s_end_still_holds_back_in_the_next(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock(T0 + HOUR - 20)
    b = budget(redis, settings, clock, backlog_window_seconds=60, burst_per_second=1)
    await b.settle(await b.reserve("heavy", 50, P), OK)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("light", 1, P)  # the burst limit: light waits
    assert info.value.reason == "burst"
    clock.now = T0 + HOUR + 5  # a new hour: nobody has spent anything in it yet
    await b.settle(await b.reserve("heavy", 1, P), OK)
    clock.now += 2
    with pytest.raises(BudgetExhausted) as held:
        await b.reserve("heavy", 1, P)
    assert held.value.reason == "fair-share"


async def test_a_waiting_site_s_new_weight_counts_at_once(redis: Redis, settings: Settings) -> None:
    clock = FakeClock(T0)
    b = budget(redis, settings, clock, pacing=True, pacing_lead_seconds=0, reserve_fraction=0)
    clock.now = T0 + 360  # a line of 100 points
    await b.reserve("heavy", 60, P)
    await b.reserve("light", 30, P)
    await b.reserve("heavy", 10, P)
    with pytest.raises(BudgetExhausted):
        await b.reserve("light", 1, P)  # light waits, having spent 30 to heavy's 70
    clock.now += 10
    with pytest.raises(BudgetExhausted) as held:
        await b.reserve("heavy", 1, P)
    assert held.value.reason == "fair-share"
    await b.set_weight("light", 0.25)  # 30 points are more than a quarter share's worth of 70
    await b.reserve("heavy", 1, P)


async def test_a_waiting_site_s_settled_cost_counts_at_once(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock(T0 + 600)
    b = budget(redis, settings, clock, burst_per_second=1)  # one call a second
    await b.reserve("heavy", 60, P)
    clock.now += 1
    listing = await b.reserve("light", 5, P)  # a list call, estimated at 5 points
    clock.now += 1
    await b.reserve("heavy", 30, P)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("light", 6, P)  # light waits, having spent 5 to heavy's 90
    assert info.value.reason == "burst"
    await b.settle(listing, Observation(status=200, actual_cost=95))  # it cost 95
    clock.now += 1
    await b.reserve("heavy", 1, P)  # light has had more than heavy: heavy may go


@pytest.mark.parametrize("retry_after", [0.0, -30.0])
async def test_a_429_saying_to_come_back_now_pauses_a_moment(
    redis: Redis, settings: Settings, retry_after: float
) -> None:
    """``Retry-After: 0`` (or a date already past): every worker must still hold back a
    moment, or the calls meet 429 after 429 as fast as the burst limit lets them out."""
    clock = FakeClock(T0 + 60)
    b = budget(redis, settings, clock)
    r = await b.reserve("acme", 2, P)
    await b.settle(r, Observation(status=429, retry_after=retry_after))
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("beta", 2, P)
    assert info.value.reason == "paused" and info.value.delay == pytest.approx(1.0)


async def test_the_hour_runs_out_when_its_points_are_spent_not_merely_reserved(
    redis: Redis, settings: Settings
) -> None:
    """A list call reserved at its limit fills the hour on paper for a moment; it costs far
    less, the hour goes on, and runs out later: that later time is the one reported."""
    clock = FakeClock(T0 + 600)
    b = budget(redis, settings, clock, reserve_fraction=0)
    await b.settle(await b.reserve("a", 899, P), Observation(status=200, actual_cost=899))
    listing = await b.reserve("a", 101, P)
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("b", 2, P)  # what is in flight fills the hour: not now
    assert info.value.reason == "quota"
    await b.settle(listing, Observation(status=200, actual_cost=3))
    forecast = (await b.snapshot()).forecast
    assert forecast is None or forecast > clock.now  # a forecast at the recent rate, not a past
    clock.now = T0 + 3000  # the hour's last points
    await b.settle(await b.reserve("b", 98, P), Observation(status=200, actual_cost=98))
    clock.now += 60
    with pytest.raises(BudgetExhausted):
        await b.reserve("b", 2, P)
    assert (await b.snapshot()).forecast == pytest.approx(T0 + 3000)
