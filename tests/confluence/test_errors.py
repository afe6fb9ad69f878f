"""Every error status maps to its exception with the details an operator needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.budget.hook import (
    MIN_429_WAIT_SECONDS,
    BudgetExhausted,
    Observation,
    Priority,
    Reservation,
)
from app.confluence import ConfluenceClient, errors
from app.confluence.errors import (
    BadRequest,
    ClientError,
    Conflict,
    ConfluenceError,
    Forbidden,
    InvalidResponse,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    error_from_response,
    is_permanent,
)
from app.errors import ReactorError
from tests.confluence.conftest import RecordingBudget, basic_site
from tests.confluence.fake import FakeConfluence, envelope

CASES = json.loads((Path(__file__).parents[1] / "fixtures/confluence/errors.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_recorded_error_bodies(case: dict[str, Any]) -> None:
    exc = error_from_response(case["status"], case["body"], method="PUT", url="https://x/wiki/p")
    assert type(exc).__name__ == case["error"]
    assert exc.status == case["status"] and exc.code == case["code"]
    assert isinstance(exc, ConfluenceError) and isinstance(exc, ReactorError)
    assert str(case["status"]) in str(exc) and "PUT https://x/wiki/p" in str(exc)
    if isinstance(exc, Conflict):
        assert (exc.current_version, exc.provided_version) == (
            case["current_version"],
            case["provided_version"],
        )
    if case["body"] and "statusCode" not in case["body"] and "<html>" not in case["body"]:
        assert exc.errors and (exc.errors[0].title or "") in case["body"]


def test_envelope_details_are_kept() -> None:
    body = json.dumps(
        envelope(400, "INVALID_REQUEST_PARAMETER", "Bad limit", "limit must be <= 250")
    )
    exc = error_from_response(400, body, method="GET", url="u")
    assert exc.errors[0] == errors.ErrorItem(
        400, "INVALID_REQUEST_PARAMETER", "Bad limit", "limit must be <= 250"
    )
    assert "limit must be <= 250" in exc.message


def test_long_plain_bodies_are_cut() -> None:
    exc = error_from_response(500, "x" * 10_000, method="GET", url="u")
    assert isinstance(exc, ServerError) and len(exc.message) <= 500


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (BadRequest("m"), True),
        (Unauthorized("m"), True),
        (Forbidden("m"), True),
        (NotFound("m"), True),
        (ClientError("m"), True),
        (Conflict("m"), False),
        (RateLimited("m"), False),
        (ServerError("m"), False),
        (TransportError("m"), False),
        (InvalidResponse("m"), False),
        (ValueError("not ours"), False),
    ],
)
def test_classification(exc: BaseException, permanent: bool) -> None:
    assert is_permanent(exc) is permanent


def test_rate_limited_delay() -> None:
    assert RateLimited("m", observation=Observation(429, retry_after=12.0)).delay == 12.0
    assert RateLimited("m").delay == RateLimited.default_delay


@pytest.mark.parametrize(
    "observation",
    [Observation(429, retry_after=0.0), Observation(429, reset_epoch=1e9)],  # a reset long past
)
def test_a_429_saying_to_come_back_now_still_waits_a_moment(observation: Observation) -> None:
    """``Retry-After: 0``, or a date already past (clock skew): calling again at once would
    only meet the next 429, as fast as the workers can send them."""
    assert RateLimited("m", observation=observation).delay == MIN_429_WAIT_SECONDS


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict),
     (413, ClientError), (500, ServerError), (502, ServerError), (503, ServerError)],
)  # fmt: skip
async def test_client_raises_by_status_and_settles(
    client: ConfluenceClient,
    fake: FakeConfluence,
    budget: RecordingBudget,
    status: int,
    cls: type[ConfluenceError],
) -> None:
    fake.failures.append(
        httpx.Response(
            status,
            json=envelope(status, "X_CODE", "went wrong"),
            headers={"ATL-TraceId": "5f1c2a9e0d3b4c7a"},
        )
    )
    with pytest.raises(cls) as caught:
        await client.get_page("123")
    assert caught.value.status == status and caught.value.code == "X_CODE"
    assert caught.value.trace_id == "5f1c2a9e0d3b4c7a"
    assert caught.value.url == "https://acme.atlassian.net/wiki/api/v2/pages/123"
    assert budget.observations[-1].status == status and len(budget.settled) == 1


async def test_429_informs_the_budget_then_raises(
    client: ConfluenceClient, fake: FakeConfluence, budget: RecordingBudget
) -> None:
    fake.failures.append(
        httpx.Response(
            429,
            text="Rate limit exceeded",
            headers={
                "Retry-After": "37",
                "X-RateLimit-Reset": "2026-03-26T16:00:00Z",
                "RateLimit-Reason": "confluence-quota-tenant-based",
            },
        )
    )
    with pytest.raises(RateLimited) as caught:
        await client.get_page("123")
    observation = budget.observations[-1]
    assert observation.status == 429 and observation.retry_after == 37.0
    assert observation.reason == "confluence-quota-tenant-based" and observation.actual_cost is None
    assert caught.value.delay == 37.0 and caught.value.observation is observation


async def test_timeouts_and_connection_errors_are_transient(budget: RecordingBudget) -> None:
    failures: list[Exception] = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]

    def handler(request: httpx.Request) -> httpx.Response:
        raise failures.pop(0)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ConfluenceClient(http, basic_site(), budget)
        for name in ("ReadTimeout", "ConnectError"):
            with pytest.raises(TransportError, match=name) as caught:
                await client.get_space("1")
            assert not is_permanent(caught.value)
    assert [o.status for o in budget.observations] == [0, 0]


async def test_non_json_success_is_invalid_response(budget: RecordingBudget) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ConfluenceClient(http, basic_site(), budget)
        with pytest.raises(InvalidResponse):
            await client.get_space("1")
    assert len(budget.settled) == 1


async def test_budget_refusal_sends_nothing(fake: FakeConfluence) -> None:
    class Exhausted(RecordingBudget):
        async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
            raise BudgetExhausted(retry_at=160.0, now=100.0, reason="hour spent")

    async with httpx.AsyncClient(transport=fake.transport) as http:
        client = ConfluenceClient(http, basic_site(), Exhausted())
        with pytest.raises(BudgetExhausted) as caught:
            await client.get_space("1")
    assert caught.value.delay == 60.0 and fake.requests == []


def test_error_text_never_holds_credentials() -> None:
    exc = error_from_response(
        401, "", method="GET", url=errors.strip_query("https://x/wiki/a?jwt=secret")
    )
    assert "secret" not in str(exc)
