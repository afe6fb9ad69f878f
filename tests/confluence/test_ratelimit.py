"""Rate-limit headers into budget observations: recorded header sets and edge cases."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.budget.hook import MAX_WAIT_SECONDS, Observation
from app.confluence import ConfluenceClient
from app.confluence.errors import ServerError
from app.confluence.ratelimit import observe, parse_reset, parse_retry_after, parse_structured
from tests.confluence.conftest import RecordingBudget
from tests.confluence.fake import FakeConfluence

CASES = json.loads(
    (Path(__file__).parents[1] / "fixtures/confluence/ratelimit-headers.json").read_text()
)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_recorded_header_sets(case: dict[str, Any]) -> None:
    obs = observe(case["status"], case["headers"].items(), now=epoch(case["now"]), actual_cost=3)
    want = case["expect"]
    assert obs.status == case["status"] and obs.actual_cost == 3
    assert (obs.limit, obs.remaining) == (want["limit"], want["remaining"])
    assert obs.reset_epoch == (epoch(want["reset"]) if want["reset"] else None)
    assert obs.near_limit is want["near_limit"] and obs.reason == want["reason"]
    assert obs.retry_after == (float(want["retry_after"]) if want["retry_after"] else None)
    assert obs.raw == {k.lower(): v for k, v in case["headers"].items()}


def test_unrelated_headers_are_not_kept() -> None:
    obs = observe(200, [("Content-Type", "application/json"), ("ETag", "x")], now=0.0)
    assert obs.raw == {} and obs.limit is None and not obs.near_limit


def test_reset_formats() -> None:
    now = epoch("2026-03-26T15:30:00+00:00")
    assert parse_reset("2026-03-26T16:00Z", now) == epoch("2026-03-26T16:00:00+00:00")
    assert parse_reset("2026-03-26T16:00:00.000Z", now) == epoch("2026-03-26T16:00:00+00:00")
    assert parse_reset("2026-03-26T16:00:00", now) == epoch("2026-03-26T16:00:00+00:00")
    assert parse_reset("1774540800", now) == 1774540800.0
    assert parse_reset("30", 1000.0) == 1030.0
    assert parse_reset("soon", 0) is None and parse_reset(None, 0) is None
    # what no server means: nothing to wait for, never an overflow or a wait of centuries
    assert parse_reset("inf", 0) is None and parse_reset("-30", 0) is None
    assert parse_reset("9999-12-31T23:59:59Z", 1000.0) == 1000.0 + MAX_WAIT_SECONDS


def test_retry_after_formats() -> None:
    assert parse_retry_after("5", 0) == 5.0
    # not a wait: a 429 saying so gets the default pause rather than an immediate retry
    assert parse_retry_after("-3", 0) is None
    assert parse_retry_after("inf", 0) is None and parse_retry_after("nan", 0) is None
    assert parse_retry_after("1e300", 0) == MAX_WAIT_SECONDS
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", 0) == MAX_WAIT_SECONDS
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 -1400", 0) in (None, MAX_WAIT_SECONDS)
    assert (
        parse_retry_after("Thu, 26 Mar 2026 15:00:30 GMT", epoch("2026-03-26T15:00:00+00:00")) == 30
    )
    assert parse_retry_after("later", 0) is None


def test_structured_header_parsing() -> None:
    assert parse_structured('"a";q=1;w=2, "b";r=3') == {"a": {"q": "1", "w": "2"}, "b": {"r": "3"}}
    assert parse_structured("") == {}


@given(st.dictionaries(st.sampled_from([
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-NearLimit",
    "RateLimit-Reason", "Retry-After", "RateLimit", "RateLimit-Policy", "Beta-RateLimit",
    "Beta-Retry-After", "X-Beta-RateLimit-Reset",
]), st.text(max_size=40)), st.sampled_from([200, 429, 503]))  # fmt: skip
def test_any_header_values_never_crash(headers: dict[str, str], status: int) -> None:
    obs = observe(status, headers.items(), now=1_700_000_000.0)
    assert obs.status == status and set(obs.raw) == {k.lower() for k in headers}


async def test_every_response_is_observed_by_the_hook(
    client: ConfluenceClient, fake: FakeConfluence, budget: RecordingBudget
) -> None:
    space = fake.add_space("DEV")
    fake.headers = {
        "X-RateLimit-Limit": "65000",
        "X-RateLimit-Remaining": "12000",
        "X-RateLimit-NearLimit": "true",
        "X-RateLimit-Reset": "2026-11-27T11:00:00Z",
    }
    await client.get_space(space["id"])
    obs = budget.observations[-1]
    assert (obs.limit, obs.remaining, obs.near_limit) == (65000, 12000, True)
    assert obs.reset_epoch == epoch("2026-11-27T11:00:00+00:00") and obs.actual_cost == 2


async def test_retry_after_on_503_reaches_the_hook(
    client: ConfluenceClient, fake: FakeConfluence, budget: RecordingBudget
) -> None:
    fake.failures.append(httpx.Response(503, text="busy", headers={"Retry-After": "9"}))
    with pytest.raises(ServerError, match="503") as caught:
        await client.get_space("1")
    assert budget.observations[-1].retry_after == 9.0 and caught.value.retry_after == 9.0


def test_points_policy_is_never_mixed_with_another_counter() -> None:
    """A request counter in X-RateLimit-* must not shrink the points budget or lend it a
    remaining figure; X-RateLimit-* stating the policy's own limit fills what it lacks."""
    policy = ("RateLimit-Policy", '"global-app-quota";q=65000;w=3600')
    counter = observe(
        200,
        [policy, ("X-RateLimit-Limit", "10000"), ("X-RateLimit-Remaining", "12")],
        now=0.0,
    )
    assert (counter.limit, counter.remaining) == (65000, None)
    bare = observe(200, [policy, ("X-RateLimit-Remaining", "12")], now=0.0)
    assert (bare.limit, bare.remaining) == (65000, None)
    same = observe(
        200,
        [policy, ("X-RateLimit-Limit", "65000"), ("X-RateLimit-Remaining", "4000")],
        now=0.0,
    )
    assert (same.limit, same.remaining) == (65000, 4000)
    only_legacy = observe(
        200, [("X-RateLimit-Limit", "65000"), ("X-RateLimit-Remaining", "9")], now=0.0
    )
    assert (only_legacy.limit, only_legacy.remaining) == (65000, 9)


@pytest.mark.parametrize("digits", ["9" * 400, "-" + "9" * 400, "99999999999999999999", "-5"])
def test_a_reset_delay_out_of_range_is_no_reset(digits: str) -> None:
    """``t=`` is seconds to the reset: one beyond any float (or below zero) is not a time."""
    obs = observe(200, [("RateLimit", f'"global-app-quota";r=5;t={digits}')], now=1e9)
    assert obs.reset_epoch is None and obs.remaining == 5


@pytest.mark.parametrize(
    "header",
    [
        ("RateLimit", f'"global-app-quota";r={"9" * 400};t=60'),
        ("RateLimit-Policy", f'"global-app-quota";q={"9" * 400};w=3600'),
        ("X-RateLimit-Remaining", "9" * 400),
        ("X-RateLimit-Limit", "-" + "9" * 400),
    ],
)
def test_figures_beyond_any_quota_are_not_figures(header: tuple[str, str]) -> None:
    obs = observe(200, [header], now=1e9)
    assert obs.limit is None and obs.remaining is None


def test_a_long_reset_delay_is_believed_up_to_the_cap() -> None:
    obs = observe(200, [("RateLimit", '"global-app-quota";r=5;t=99999999')], now=1e9)
    assert obs.reset_epoch == 1e9 + MAX_WAIT_SECONDS


async def test_headers_that_cannot_be_read_still_settle_the_call(
    client: ConfluenceClient,
    fake: FakeConfluence,
    budget: RecordingBudget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a response's rate-limit headers hold, the call it answered is settled (its
    status and cost) and returned: a parsing failure is no failed call."""
    space = fake.add_space("DEV")

    def broken(*args: object, **kwargs: object) -> Observation:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr("app.confluence.transport.observe", broken)
    assert (await client.get_space(space["id"])).id == space["id"]
    obs = budget.observations[-1]
    assert (obs.status, obs.actual_cost, obs.remaining) == (200, 2, None)
