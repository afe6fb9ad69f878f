"""A worker's metrics endpoint and the per-minute activity counters."""

from __future__ import annotations

import httpx
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
