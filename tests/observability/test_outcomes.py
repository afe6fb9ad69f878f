"""Pure pieces of the job layer's reporting and deferral timing."""

from __future__ import annotations

import random

import pytest

from app.budget.hook import BudgetExhausted, Observation
from app.confluence.errors import RateLimited
from app.errors import Defer
from app.metrics import Metrics
from workers.observe import activity_names, short_reason
from workers.retry import DEFER_JITTER_MAX_SECONDS, decide, spread

SCHEDULE = [10.0, 60.0]


def test_outcomes_map_to_the_overview_counters() -> None:
    assert activity_names("done", "") == ["done"]
    assert activity_names("retry", "TransientFailure: 502") == ["failed", "retry"]
    assert activity_names("dead", "NotFound: gone") == ["failed", "dead"]
    assert activity_names("deferred", "budget: tenant share used") == ["deferred:budget"]
    assert activity_names("deferred", "") == ["deferred:unspecified"]


def test_reason_labels_stay_small() -> None:
    assert short_reason("NotFound: 404 Not Found (GET https://x/wiki/api/v2/pages/9)") == (
        "NotFound"
    )
    assert len(short_reason("x" * 500)) == 40


def test_metric_names_are_the_documented_ones() -> None:
    metrics = Metrics()
    metrics.job_attempts.labels(outcome="done").inc()
    metrics.dead_lettered.labels(reason="NotFound").inc()
    text = metrics.render().decode()
    assert 'reactor_job_attempts_total{outcome="done"} 1.0' in text
    assert 'reactor_dead_lettered_total{reason="NotFound"} 1.0' in text


def budget(delay: float) -> BudgetExhausted:
    return BudgetExhausted(retry_at=1000.0 + delay, now=1000.0, reason="budget: hour used")


def test_budget_deferrals_are_spread_never_early_and_bounded() -> None:
    rng = random.Random(7)
    delays = [decide(budget(60.0), 0, SCHEDULE, 0.2, rng.random).delay for _ in range(200)]
    assert min(delays) >= 60.0 and max(delays) <= 72.0
    assert len({round(d, 3) for d in delays}) > 150, "thousands of jobs must not wake together"
    assert decide(budget(60.0), 0, SCHEDULE, 0.2, lambda: 1.0).delay == pytest.approx(72.0)
    assert decide(budget(60.0), 0, SCHEDULE, 0.2, lambda: 0.0).delay == 60.0
    long_wait = decide(budget(3000.0), 0, SCHEDULE, 0.2, lambda: 1.0).delay
    assert long_wait == pytest.approx(3000.0 + DEFER_JITTER_MAX_SECONDS)


def test_a_429_is_spread_the_same_way_and_other_deferrals_are_exact() -> None:
    limited = RateLimited("points", status=429, observation=Observation(status=429, retry_after=10))
    assert decide(limited, 0, SCHEDULE, 0.2, lambda: 0.5).delay == pytest.approx(11.0)
    assert decide(Defer(42.0, "no token"), 0, SCHEDULE, 0.2, lambda: 1.0).delay == 42.0
    assert spread(0.0, 0.2, lambda: 1.0) == 0.0
    # REACTOR_RETRY_JITTER=0 turns the spread off
    assert decide(budget(60.0), 0, SCHEDULE, 0.0, lambda: 1.0).delay == 60.0
