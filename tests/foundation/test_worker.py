from __future__ import annotations

from arq.connections import create_pool

from app import redis as redis_conn
from app.queue import job_deserializer, job_serializer
from app.settings import Settings
from workers.main import queue_name


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
