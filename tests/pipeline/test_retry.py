"""Outcome mapping and backoff: pure functions."""

from __future__ import annotations

import pytest

from app.budget.hook import BudgetExhausted, Observation
from app.confluence.errors import Conflict, Forbidden, NotFound, RateLimited, ServerError
from app.errors import Defer, PermanentFailure, TransientFailure
from workers.retry import backoff, decide, describe

SCHEDULE = [10.0, 60.0, 300.0, 1800.0, 7200.0]


def test_backoff_follows_the_schedule_within_the_jitter() -> None:
    assert [backoff(n, SCHEDULE, 0.0) for n in range(1, 6)] == SCHEDULE
    assert backoff(6, SCHEDULE, 0.2) is None
    assert backoff(1, SCHEDULE, 0.2, rand=lambda: 0.0) == pytest.approx(8.0)
    assert backoff(1, SCHEDULE, 0.2, rand=lambda: 1.0) == pytest.approx(12.0)
    assert backoff(3, SCHEDULE, 0.2, rand=lambda: 0.5) == pytest.approx(300.0)


def test_jitter_spreads_retries() -> None:
    delays = {backoff(2, SCHEDULE, 0.2) for _ in range(50)}
    assert len(delays) > 40
    assert all(d is not None and 48.0 <= d <= 72.0 for d in delays)


def test_defer_never_counts_as_an_attempt() -> None:
    decision = decide(Defer(42.0, "waiting for a token"), 5, SCHEDULE, 0.2)
    assert (decision.action, decision.delay, decision.counts) == ("defer", 42.0, False)
    budget = decide(BudgetExhausted(retry_at=1030.0, now=1000.0, reason="points"), 0, SCHEDULE, 0)
    assert (budget.action, budget.delay, budget.reason, budget.counts) == (
        "defer",
        30.0,
        "points",
        False,
    )


def test_permanent_failures_are_dead_at_once() -> None:
    decision = decide(PermanentFailure("page 42 is gone"), 0, SCHEDULE, 0.2)
    assert (decision.action, decision.counts) == ("dead", True)
    assert decision.reason == "PermanentFailure: page 42 is gone"


@pytest.mark.parametrize("exc", [TransientFailure("503"), ValueError("bug"), TimeoutError()])
def test_other_failures_retry_then_die(exc: Exception) -> None:
    for previous in range(len(SCHEDULE)):
        decision = decide(exc, previous, SCHEDULE, 0.0)
        assert (decision.action, decision.delay) == ("retry", SCHEDULE[previous])
    assert decide(exc, len(SCHEDULE), SCHEDULE, 0.0).action == "dead"


def test_descriptions_are_bounded() -> None:
    assert describe(TimeoutError()).startswith("TimeoutError: the job ran longer")
    assert len(describe(RuntimeError("x" * 5000))) == 500


def test_confluence_errors_follow_their_nature() -> None:
    limited = RateLimited("points", status=429, observation=Observation(status=429, retry_after=7))
    decision = decide(limited, 2, SCHEDULE, 0.0)
    assert (decision.action, decision.delay, decision.counts) == ("defer", 7.0, False)
    for gone in (NotFound("no page", status=404), Forbidden("no scope", status=403)):
        assert decide(gone, 0, SCHEDULE, 0.0).action == "dead"
    for passing in (Conflict("stale", status=409), ServerError("oops", status=502)):
        assert decide(passing, 0, SCHEDULE, 0.0).action == "retry"


def test_a_429_saying_to_come_back_now_is_deferred_a_moment() -> None:
    limited = RateLimited("burst", status=429, observation=Observation(status=429, retry_after=0))
    decision = decide(limited, 0, SCHEDULE, 0.0)
    assert (decision.action, decision.counts) == ("defer", False) and decision.delay >= 1.0


def test_a_server_error_saying_when_to_come_back_is_not_retried_sooner() -> None:
    unavailable = ServerError(
        "maintenance", status=503, observation=Observation(status=503, retry_after=120)
    )
    decision = decide(unavailable, 0, SCHEDULE, 0.0)
    assert (decision.action, decision.delay, decision.counts) == ("retry", 120.0, True)
    soon = ServerError("blip", status=503, observation=Observation(status=503, retry_after=1))
    assert decide(soon, 0, SCHEDULE, 0.0).delay == 10.0, "the schedule's own delay is later"
