"""Shared pieces of the budget tests: a settable clock and budget builders."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from app.budget.model import BudgetConfig
from app.budget.redis_budget import RedisBudget
from app.settings import Settings

T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC).timestamp()


class FakeClock:
    """Epoch seconds that move only when told; ``sleep`` advances it (no real waiting)."""

    def __init__(self, now: float = T0 + 600) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def config(**overrides: Any) -> BudgetConfig:
    base = BudgetConfig(
        points_per_hour=1000,
        pacing=False,
        burst_per_second=0,
        reserve_fraction=0.05,
        max_wait_seconds=0,
    )
    return dataclasses.replace(base, **overrides)


def budget(
    redis: Redis, settings: Settings, clock: FakeClock | None, **overrides: Any
) -> RedisBudget:
    if clock is None:
        return RedisBudget(redis, settings, config=config(**overrides))
    return RedisBudget(redis, settings, config=config(**overrides), clock=clock, sleep=clock.sleep)
