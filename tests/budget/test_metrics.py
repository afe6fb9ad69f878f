"""Prometheus gauges from a real snapshot, on a registry of the test's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from app.budget.hook import Observation, Priority
from app.budget.metrics import BudgetMetrics
from app.settings import Settings
from tests.budget.helpers import FakeClock, budget


async def test_gauges_follow_the_snapshot(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    done = await b.reserve("acme", 10, Priority.REACTION)
    await b.reserve("beta", 5, Priority.RECONCILE)  # still in flight
    await b.settle(done, Observation(status=200, actual_cost=7))
    r = await b.reserve("acme", 1, Priority.INTERACTIVE)
    await b.settle(r, Observation(status=429, retry_after=20, reason="burst"))

    registry = CollectorRegistry()
    metrics = BudgetMetrics(registry)
    metrics.update(await b.snapshot())

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"reactor_budget_{name}", labels)

    assert value("quota_points") == 1000
    assert value("spent_points") == 7
    assert value("reserved_points") == 5
    assert value("remaining_points") == 1000 - 12
    assert value("tenant_spent_points", tenant="acme") == 7
    assert value("tenant_reserved_points", tenant="beta") == 5
    assert value("priority_spent_points", priority="reaction") == 7
    assert value("priority_reserved_points", priority="reconcile") == 5
    assert value("429_responses") == 1
    assert value("paused") == 1
    assert value("paused_until_seconds") == clock.now + 20
    assert value("exhaustion_forecast_seconds") == 0

    BudgetMetrics(CollectorRegistry())  # a second instance does not collide
