"""The pure budget arithmetic: quota shape, costs, reconciliation, reserve, pacing, fairness."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.budget.model import (
    HOUR,
    BudgetConfig,
    adopt_remaining,
    estimate_cost,
    fair_gate,
    forecast_exhaustion,
    hour_bounds,
    jain_index,
    paced_cap,
    quota_decision,
    quota_headers,
    reconcile,
    reserve_points,
)

T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC).timestamp()


def test_hours_are_utc_hours() -> None:
    start, end = hour_bounds(T0 + 1234.5)
    assert (start, end) == (T0, T0 + HOUR)
    assert hour_bounds(T0 - 0.001) == (T0 - HOUR, T0)


@pytest.mark.parametrize(
    ("method", "kwargs", "points"),
    [
        ("GET", {}, 2),  # GET /pages/{id}: 1 + 1 page (the docs' own example)
        ("GET", {"object_points": 2}, 3),  # a user lookup: 1 + 2
        ("GET", {"list_limit": 25}, 26),  # a list is charged at its limit
        ("GET", {"list_limit": 200, "object_points": 2}, 401),  # 200-member group page
        ("POST", {"list_limit": 50}, 1),  # writes cost the base only
        ("PUT", {}, 1),
        ("delete", {}, 1),
    ],
)
def test_cost_estimates_follow_the_points_table(
    method: str, kwargs: dict[str, int], points: int
) -> None:
    assert estimate_cost(method, **kwargs) == points


def test_reconcile_charges_actual_cost_and_nothing_for_429() -> None:
    assert reconcile(26, 4, 200) == 4
    assert reconcile(26, None, 200) == 26
    assert reconcile(26, 4, 429) == 0


def test_lower_server_remaining_is_adopted_higher_is_ignored() -> None:
    assert adopt_remaining(1000, 100, 500) == 400
    assert adopt_remaining(1000, 100, 950) == 0
    assert adopt_remaining(1000, 100, -3) == 900


def test_request_counters_are_not_taken_for_the_points_quota() -> None:
    assert quota_headers(65_000, 1200, 65_000) == (65_000, 1200)
    assert quota_headers(None, 1200, 65_000) == (-1, 1200)
    assert quota_headers(None, None, 65_000) == (-1, -1)
    assert quota_headers(400, 350, 65_000) == (-1, -1)  # a legacy request counter


def test_reserve_grows_with_priority_and_is_released_at_the_end() -> None:
    config = BudgetConfig(reserve_fraction=0.05, release_seconds=300)
    assert reserve_points(config, 1000, 0, 3000) == 0
    assert reserve_points(config, 1000, 1, 3000) == 50
    assert reserve_points(config, 1000, 2, 3000) == 100
    assert reserve_points(config, 1000, 1, 150) == 25
    assert reserve_points(config, 1000, 2, 0) == 0


def test_pacing_spreads_the_cap_with_a_lead() -> None:
    assert paced_cap(3600, 0, 60) == 60
    assert paced_cap(3600, 1800, 0) == 1800
    assert paced_cap(3600, 3599, 60) == 3600


def test_quota_decision_orders_quota_reserve_pacing() -> None:
    config = BudgetConfig(reserve_fraction=0.05, release_seconds=300, pacing_lead_seconds=0)
    now = T0 + 1800
    top = quota_decision(config, now=now, quota=1000, spent=990, cost=10, priority=0, paced=False)
    assert top.admitted, "the top priority may spend the whole quota"
    full = quota_decision(config, now=now, quota=1000, spent=995, cost=10, priority=0, paced=True)
    assert (full.admitted, full.retry_at, full.reason) == (False, T0 + HOUR, "quota")
    kept = quota_decision(config, now=now, quota=1000, spent=940, cost=20, priority=1, paced=False)
    assert not kept.admitted and kept.reason == "reserve"
    # the reserve of 50 shrinks linearly over the last 300 s; 40 points of room at 240 s left
    assert kept.retry_at == pytest.approx(T0 + HOUR - 240)
    paced = quota_decision(config, now=now, quota=1000, spent=470, cost=40, priority=1, paced=True)
    # cap 950, half the hour gone: 475 allowed; 510 needed -> at 510/950 of the hour
    assert not paced.admitted and paced.reason == "pacing"
    assert paced.retry_at == pytest.approx(T0 + 510 / 950 * HOUR)
    ahead = quota_decision(config, now=now, quota=1000, spent=470, cost=30, priority=0, paced=True)
    assert ahead.admitted, "the top priority is paced on the full quota's line (500 by now)"
    unpaced = quota_decision(
        config, now=now, quota=1000, spent=470, cost=40, priority=1, paced=False
    )
    assert unpaced.admitted


@given(
    spent=st.integers(0, 2000),
    cost=st.integers(1, 100),
    priority=st.integers(0, 2),
    at=st.floats(0, HOUR - 1),
    paced=st.booleans(),
)
def test_admitted_never_exceeds_quota_and_retry_is_in_the_future(
    spent: int, cost: int, priority: int, at: float, paced: bool
) -> None:
    config = BudgetConfig()
    now = T0 + at
    decision = quota_decision(
        config, now=now, quota=1000, spent=spent, cost=cost, priority=priority, paced=paced
    )
    if decision.admitted:
        assert spent + cost <= 1000
    else:
        assert now <= decision.retry_at <= T0 + HOUR


def test_fair_gate_holds_back_the_heavy_tenant_only_while_others_wait() -> None:
    spent = {"heavy": 900.0, "light": 100.0}
    assert fair_gate("heavy", spent, {}, backlogged=["heavy"]) == (True, 0.0)
    assert fair_gate("heavy", spent, {}, backlogged=["heavy", "light"]) == (False, 800.0)
    assert fair_gate("light", spent, {}, backlogged=["heavy", "light"]) == (True, 0.0)
    weights = {"heavy": 9.0}
    assert fair_gate("heavy", spent, weights, backlogged=["light"])[0], "weights scale shares"
    assert fair_gate("new", spent, {}, backlogged=["heavy", "light"]) == (True, 0.0)


def test_jain_index() -> None:
    assert jain_index([5, 5, 5, 5]) == 1.0
    assert jain_index([1, 0, 0, 0]) == 0.25
    assert jain_index([]) == 1.0
    assert 0.9 < jain_index([10, 9, 11, 10]) < 1.0


def test_forecast_of_exhaustion() -> None:
    now = T0 + 600
    at = forecast_exhaustion(now=now, quota=1000, spent=400, recent_points=300, recent_seconds=300)
    assert at == pytest.approx(now + 600)
    assert (
        forecast_exhaustion(now=now, quota=1000, spent=400, recent_points=1, recent_seconds=300)
        is None
    )
    assert (
        forecast_exhaustion(now=now, quota=1000, spent=1000, recent_points=0, recent_seconds=0)
        == now
    )
