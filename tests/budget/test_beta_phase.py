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


async def test_one_tenant_s_own_quota_running_out_defers_no_other_tenant(
    redis: Redis, settings: Settings
) -> None:
    """A site with a quota of its own (``tenant-app-quota``) reports its remainder: that is
    not the app's shared hour, and the other sites go on."""
    clock = FakeClock()
    b = budget(redis, settings, clock)
    reset = int(T0 + HOUR - clock())
    headers = [
        ("Beta-RateLimit", f'"tenant-app-quota";r=0;t={reset}'),
        ("Beta-Retry-After", str(reset)),
        ("X-Beta-RateLimit-Reason", "confluence-quota-tenant-based"),
    ]
    seen = observe(200, headers, now=clock(), actual_cost=2)
    assert seen.remaining == 0 and seen.tenant_scoped
    reservation = await b.reserve("big-site", 2, Priority.INTERACTIVE)
    await b.settle(reservation, seen)
    await b.reserve("small-site", 1, Priority.INTERACTIVE)  # not deferred
    snap = await b.snapshot()
    assert snap.remaining >= 1000 * 0.95 - 3 and snap.paused_until is None


@pytest.mark.parametrize(
    ("headers", "scoped"),
    [
        ([("RateLimit", '"tenant-app-quota";r=5;t=60')], True),
        ([("RateLimit", '"global-app-quota";r=5;t=60')], False),
        ([("RateLimit", '"global-app-quota";r=50;t=60, "tenant-app-quota";r=5;t=60')], True),
        ([("RateLimit", '"global-app-quota";r=5;t=60, "tenant-app-quota";r=50;t=60')], False),
        (
            [("X-RateLimit-Remaining", "0"), ("RateLimit-Reason", "confluence-quota-tenant-based")],
            True,
        ),
        (
            [("X-RateLimit-Remaining", "0"), ("RateLimit-Reason", "confluence-quota-global-based")],
            False,
        ),
        ([("X-RateLimit-Remaining", "7")], False),
    ],
)
def test_which_quota_the_figures_describe(headers: list[tuple[str, str]], scoped: bool) -> None:
    assert observe(200, headers, now=T0).tenant_scoped is scoped


def shared_429_with_a_tenant_warning(now: float) -> list[tuple[str, str]]:
    """A 429 from the app's shared quota that also warns, in beta headers, about the site's
    own quota (a site in review for a quota of its own answers both ways)."""
    return [
        ("Retry-After", "30"),
        ("X-RateLimit-Limit", "1000"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "2026-11-27T15:00:00Z"),
        ("RateLimit-Reason", "confluence-quota-global-based"),
        ("Beta-RateLimit-Policy", '"tenant-app-quota";q=200;w=3600'),
        ("Beta-RateLimit", f'"tenant-app-quota";r=150;t={int(T0 + HOUR - now)}'),
    ]


def test_enforced_headers_decide_over_a_beta_tenant_warning() -> None:
    seen = observe(429, shared_429_with_a_tenant_warning(T0), now=T0)
    assert not seen.tenant_scoped
    # the shared quota's figures, never the tenant's beta ones taken for them
    assert (seen.limit, seen.remaining, seen.retry_after) == (1000, 0, 30.0)
    assert seen.reason == "confluence-quota-global-based"


@pytest.mark.parametrize(
    ("headers", "figures"),
    [
        # beta figures of the same (shared) quota fill what the enforced ones leave out
        (
            [
                ("X-RateLimit-Remaining", "40"),
                ("Beta-RateLimit-Policy", '"global-app-quota";q=900'),
            ],
            (900, 40),
        ),
        # a beta tenant quota's figures never fill the shared quota's
        (
            [("X-RateLimit-Remaining", "40"), ("Beta-RateLimit-Policy", '"tenant-app-quota";q=90')],
            (None, 40),
        ),
        # nor another limit's
        (
            [
                ("X-RateLimit-Limit", "1000"),
                ("Beta-RateLimit-Policy", '"global-app-quota";q=900'),
                ("Beta-RateLimit", '"global-app-quota";r=5;t=60'),
            ],
            (1000, None),
        ),
        # beta alone still paces
        ([("Beta-RateLimit", '"global-app-quota";r=5;t=60')], (None, 5)),
    ],
)
def test_beta_figures_fill_in_only_for_the_same_quota(
    headers: list[tuple[str, str]], figures: tuple[int | None, int | None]
) -> None:
    seen = observe(200, headers, now=T0)
    assert (seen.limit, seen.remaining) == figures


async def test_a_shared_quota_429_pauses_every_tenant_despite_a_beta_tenant_warning(
    redis: Redis, settings: Settings
) -> None:
    clock = FakeClock()
    b = budget(redis, settings, clock)
    reservation = await b.reserve("big-site", 2, Priority.INTERACTIVE)
    seen = observe(429, shared_429_with_a_tenant_warning(clock()), now=clock(), actual_cost=2)
    await b.settle(reservation, seen)
    snap = await b.snapshot()
    assert snap.n429 == 1 and snap.paused_until == pytest.approx(clock() + 30)
    with pytest.raises(BudgetExhausted):
        await b.reserve("small-site", 1, Priority.INTERACTIVE)  # the whole app waits
