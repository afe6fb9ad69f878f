from __future__ import annotations

from arq.connections import create_pool

from app import redis as redis_conn
from app.queue import job_deserializer, job_serializer
from app.settings import Settings
from workers.main import cron_jobs, queue_name


async def test_burst_worker_runs_a_queued_job(settings: Settings, burst_worker) -> None:  # type: ignore[no-untyped-def]
    assert settings.redis_url is not None
    pool = await create_pool(
        redis_conn.arq_settings(settings.redis_url),
        default_queue_name=queue_name(settings),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
    )
    try:
        job = await pool.enqueue_job("ping", "hello", _job_id=f"{settings.redis_prefix}ping")
        assert job is not None
        worker = burst_worker()
        await worker.main()
        assert worker.jobs_complete == 1
        assert await job.result(timeout=5) == "hello"
        assert await pool.exists(f"{queue_name(settings)}:health-check")
    finally:
        await pool.aclose()


def test_each_deployment_on_one_redis_has_its_own_reconcile_tick(settings: Settings) -> None:
    """arq keys a cron run by its name and minute outside any prefix: two deployments sharing a
    Redis (different REACTOR_REDIS_PREFIX) must not take each other's ticks."""
    other = settings.model_copy(update={"redis_prefix": "other-deployment:"})
    (mine,) = cron_jobs(settings) or []
    (theirs,) = cron_jobs(other) or []
    assert mine.name != theirs.name
    assert mine.name.startswith(settings.redis_prefix) and theirs.name.startswith("other-")
    assert cron_jobs(settings, burst=True) is None
    assert cron_jobs(settings.model_copy(update={"reconcile_interval_seconds": 0})) is None
