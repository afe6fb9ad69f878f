"""The quota's pre-enforcement phase: beta headers pace the budget, they never pause it.

Before Atlassian enforces the points quota for an app, Confluence answers every call and only
says, in ``Beta-`` headers, where the app stands and when it *would* have been refused (the
simulator's ``--quota-beta`` sends exactly these; ``tests/simulator/test_auth_and_limits.py``).
The budget takes the reported remainder as it takes an enforced one, so the app keeps to the
quota it is about to be held to, but a ``Beta-Retry-After`` on a 200 is no 429: no pause for
every worker, no 429 counted.
"""

from __future__ import annotations

import dataclasses

import pytest
from redis.asyncio import Redis

from app.budget.hook import BudgetExhausted, Priority
from app.budget.model import HOUR
from app.confluence.ratelimit import observe
from app.settings import Settings
from tests.budget.helpers import T0, FakeClock, budget


def beta_response(left: int, *, now: float) -> list[tuple[str, str]]:
    reset = int(T0 + HOUR - now)
    headers = [
        ("Beta-RateLimit", f'"global-app-quota";r={left};t={reset}'),
        ("X-Beta-RateLimit-NearLimit", "true" if left < 200 else "false"),
    ]
    if left:
        return [*headers, ("Beta-RateLimit-Policy", '"global-app-quota";q=1000;w=3600')]
    return [
        *headers,
        ("Beta-Retry-After", str(reset)),
        ("X-Beta-RateLimit-Reason", "confluence-quota-global-based"),
        ("X-Beta-RateLimit-Reset", "2026-11-27T15:00:00.000Z"),
    ]


async def test_beta_remainder_paces_the_budget(redis: Redis, settings: Settings) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)  # 1,000 points an hour
    reservation = await b.reserve("acme", 2, Priority.INTERACTIVE)
    seen = observe(200, beta_response(100, now=clock()), now=clock(), actual_cost=2)
    assert (seen.limit, seen.remaining, seen.retry_after) == (1000, 100, None)
    await b.settle(reservation, seen)
    snap = await b.snapshot()
    assert snap.remaining <= 100  # the server's word: 900 spent elsewhere (another process)
    assert snap.paused_until is None and snap.n429 == 0


async def test_beta_would_be_429_exhausts_the_hour_without_a_pause(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    reservation = await b.reserve("acme", 2, Priority.INTERACTIVE)
    seen = observe(200, beta_response(0, now=clock()), now=clock(), actual_cost=2)
    assert seen.remaining == 0 and seen.retry_after is None and seen.reason is None
    await b.settle(reservation, dataclasses.replace(seen))
    with pytest.raises(BudgetExhausted) as info:
        await b.reserve("acme", 1, Priority.INTERACTIVE)
    assert info.value.retry_at == T0 + HOUR  # the next hour, not a pause for Retry-After
    snap = await b.snapshot()
    assert snap.paused_until is None and snap.n429 == 0
