"""A Redis that accepts connections and stops answering: the web process answers anyway.

Down is easy (connections are refused at once); a stall (a paused or overloaded server, a
network that drops packets) leaves every read waiting. Each reply is bounded by
``REACTOR_REDIS_TIMEOUT_SECONDS``, so the ops API says 503 and ``/metrics`` serves what the
process counts itself, both within that bound.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.main import create_app
from app.settings import Settings

BOUND = 0.5
OPERATOR = {"Authorization": "Bearer test-operator-token"}


@pytest.fixture
async def stalled(settings: Settings, silent_server: int) -> AsyncIterator[httpx.AsyncClient]:
    stalled_settings = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{silent_server}/0",
            "redis_timeout_seconds": BOUND,
        }
    )
    app = create_app(stalled_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/status", OPERATOR),
        ("/api/jobs", OPERATOR),
        ("/api/dead", OPERATOR),
        ("/api/status", {"Authorization": "Bearer wrong-token"}),  # the throttle reads Redis
    ],
)
async def test_the_ops_api_answers_503_within_the_bound(
    stalled: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    started = time.monotonic()
    response = await stalled.get(path, headers=headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "redis_unavailable"
    assert elapsed < 4 * BOUND


async def test_metrics_serve_the_process_counters_within_the_bound(
    stalled: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    response = await stalled.get("/metrics")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "reactor_events_received_total" in response.text
    assert "reactor_redis_up 0.0" in response.text, "the Redis-kept gauges are not this scrape's"
    assert elapsed < 4 * BOUND
