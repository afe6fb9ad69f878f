"""The Lua reservation script decides exactly as the pure model says (quota, reserve, pacing)."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from app.budget.hook import BudgetExhausted, Priority
from app.budget.model import HOUR, quota_decision
from app.settings import Settings
from tests.budget.helpers import T0, FakeClock, budget


@pytest.mark.parametrize("pacing", [False, True])
async def test_lua_matches_model(redis: Redis, settings: Settings, pacing: bool) -> None:
    rng = random.Random(11 if pacing else 12)
    clock = FakeClock()
    b = budget(redis, settings, clock, pacing=pacing, pacing_lead_seconds=60)
    outcomes: set[str] = set()
    for i in range(120):
        clock.now = T0 + round(rng.uniform(0, HOUR - 0.001), 3)
        spent = rng.randint(0, 1000)
        cost = rng.randint(1, 60)
        priority = rng.randint(0, 2)
        hour = f"{settings.redis_prefix}budget:h:{int(T0 * 1000)}"
        stale = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}budget:*")]
        if stale:
            await redis.delete(*stale)  # the hour's figures and who waits: this case's alone
        if spent:
            await redis.hset(hour, "charged", str(spent))  # type: ignore[misc]
        expected = quota_decision(
            b.config,
            now=clock.now,
            quota=1000,
            spent=spent,
            cost=cost,
            priority=priority,
            paced=pacing,
        )
        try:
            await b.reserve(f"t{i}", cost, Priority(priority))
        except BudgetExhausted as exc:
            assert not expected.admitted, (spent, cost, priority)
            assert exc.reason == expected.reason
            assert exc.retry_at == pytest.approx(expected.retry_at, abs=0.002)
            outcomes.add(exc.reason)
        else:
            assert expected.admitted, (spent, cost, priority, expected)
            outcomes.add("admitted")
    wanted = {"admitted", "quota", "reserve"} | ({"pacing"} if pacing else set())
    assert outcomes == wanted
