"""A worker's metrics endpoint and the per-minute activity counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from app.embedded_redis import free_port
from app.metrics import Activity, Metrics, serve
from app.settings import Settings


def test_worker_metrics_are_served_on_their_own_port() -> None:
    metrics = Metrics()
    metrics.job_duration.labels(outcome="done").observe(0.3)
    metrics.job_attempts.labels(outcome="retry").inc()
    port = free_port()
    stop = serve(metrics, port, host="127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop()
    assert 'reactor_job_duration_seconds_bucket{le="0.5",outcome="done"} 1.0' in text
    assert 'reactor_job_attempts_total{outcome="retry"} 1.0' in text


async def test_activity_keeps_one_hash_per_minute(settings: Settings, redis: Redis) -> None:
    activity = Activity(redis, settings.redis_prefix)
    base = 1_800_000_000.0  # a minute boundary
    await activity.count("received:connect", now=base)
    await activity.count("received:connect", now=base + 59)
    await activity.count("received:forge", 2, now=base + 60)
    await activity.sample({"depth:queued": 7}, now=base + 61)
    await activity.sample({"depth:queued": 4}, now=base + 62)
    minutes = await activity.minutes(3, now=base + 60)
    assert minutes == [
        (int(base // 60) - 1, {}),
        (int(base // 60), {"received:connect": 2}),
        (int(base // 60) + 1, {"received:forge": 2, "depth:queued": 4}),
    ]
    ttl = await redis.ttl(activity.key(int(base // 60)))
    assert 0 < ttl <= 2 * 3600


METRICS_TOKEN = "scrape-" + "m" * 24


async def test_a_metrics_token_closes_metrics_to_scrapes_without_it(
    live_server: Callable[..., Any], settings: Settings, redis: Redis
) -> None:
    """The web port faces Atlassian, and the budget series name every tenant: with
    REACTOR_METRICS_TOKEN set only a scrape bearing it is answered."""
    from app.main import create_app

    guarded = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    server = live_server(create_app(guarded))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-enough-length"},
                        {"Authorization": f"Basic {METRICS_TOKEN}"}):  # fmt: skip
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthorized"
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "reactor_" not in refused.text and METRICS_TOKEN not in refused.text
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped.status_code == 200 and "reactor_redis_up 1.0" in scraped.text


async def test_metrics_stay_open_without_a_metrics_token(
    live_server: Callable[..., Any], settings: Settings
) -> None:
    assert settings.metrics_token is None
    async with httpx.AsyncClient(base_url=live_server().url, timeout=10) as client:
        assert (await client.get("/metrics")).status_code == 200


@pytest.mark.parametrize("value", ["short", "a-token with spaces in it", "tok\u00e9n" * 8])
def test_an_unusable_metrics_token_stops_the_process_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="metrics token"):
        Settings(metrics_token=value)
