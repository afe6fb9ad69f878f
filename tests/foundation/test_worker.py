from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from arq.connections import create_pool

from app import redis as redis_conn
from app.embedded_redis import EmbeddedRedis, free_port
from app.metrics import Metrics
from app.queue import job_deserializer, job_serializer
from app.settings import Settings
from workers.main import cron_jobs, queue_name

ROOT = Path(__file__).resolve().parents[2]


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
    mine, theirs = cron_jobs(settings) or [], cron_jobs(other) or []
    assert len(mine) == len(theirs) == 2  # the reconcile tick and the daily purge
    for own, foreign in zip(mine, theirs, strict=True):
        assert own.name != foreign.name
        assert own.name.startswith(settings.redis_prefix) and foreign.name.startswith("other-")
    assert cron_jobs(settings, burst=True) is None
    no_sweeps = settings.model_copy(update={"reconcile_interval_seconds": 0})
    assert [job.name for job in cron_jobs(no_sweeps) or []] == [f"{settings.redis_prefix}purge"]
    kept = no_sweeps.model_copy(update={"uninstalled_retention_seconds": 0})
    # uninstalled sites kept for ever: the daily run still trims the indexes
    assert [job.name for job in cron_jobs(kept) or []] == [f"{settings.redis_prefix}purge"]


def _worker_env(settings: Settings, **env: str) -> dict[str, str]:
    assert settings.redis_url is not None
    full = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    return full | {
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
        "REACTOR_RECONCILE_INTERVAL_SECONDS": "0",
        "REACTOR_LOG_FORMAT": "json",
        **env,
    }


def _run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``reactor worker`` that must end by itself (before the fix it retried for ever)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "worker"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )


def test_a_busy_metrics_port_ends_the_worker_in_one_line(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # the metrics server binds all interfaces
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _run_worker(_worker_env(settings, REACTOR_WORKER_METRICS_PORT=str(port)))
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"reactor: REACTOR_WORKER_METRICS_PORT: cannot serve metrics on port {port}: "
        "address already in use"
    )
    assert "lost Redis" not in result.stderr


@pytest.mark.parametrize(
    ("userinfo", "database", "expected"),
    [
        (":wrong-redis-pw@", "1", "Redis refused the credentials (AuthenticationError: "),
        ("", "99", "no such database on this server (ResponseError: DB index is out of range)"),
    ],
)
def test_redis_errors_no_retry_mends_end_the_worker_in_one_line(
    settings: Settings, userinfo: str, database: str, expected: str
) -> None:
    assert settings.redis_url is not None
    port = urlsplit(settings.redis_url).port
    url = f"redis://{userinfo}127.0.0.1:{port}/{database}"
    result = _run_worker(_worker_env(settings, REACTOR_REDIS_URL=url))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    shown = url.replace("wrong-redis-pw", "***")
    assert line.startswith(f"reactor: REACTOR_REDIS_URL: {shown}: {expected}"), line
    assert "wrong-redis-pw" not in result.stderr and "lost Redis" not in result.stderr


def test_a_worker_that_cannot_reach_redis_logs_json_from_its_first_line(
    settings: Settings,
) -> None:
    """REACTOR_LOG_FORMAT=json holds before the first connection, not only after it."""
    env = _worker_env(settings, REACTOR_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert worker.stderr is not None
        first = json.loads(worker.stderr.readline())
        assert first["event"] == "lost Redis; starting the worker again"
        assert first["level"] == "warning" and "Connection refused" in first["error"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_a_worker_exports_only_the_metrics_it_measures(
    settings: Settings,
    burst_worker,  # type: ignore[no-untyped-def]
) -> None:
    """No reactor_redis_up 0 or budget quota 0 from a worker: the web process sets those."""
    worker = burst_worker()
    await worker.main()
    metrics = worker.ctx["metrics"]
    metrics.job_attempts.labels(outcome="done").inc()
    text = metrics.render().decode()
    assert "reactor_job_attempts_total" in text
    assert "# TYPE reactor_dead_lettered_total counter" in text
    assert "# TYPE reactor_confluence_calls_total counter" in text
    for web_only in (
        "reactor_redis_up",
        "reactor_budget_",
        "reactor_queue_depth",
        "reactor_dead_letters ",
        "reactor_events_received",
    ):
        assert web_only not in text, web_only
    web = Metrics().render().decode()
    assert "reactor_redis_up" in web and "reactor_budget_quota_points" in web


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
        return text


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_serving_metrics_outlives_a_redis_restart(tmp_path: Path) -> None:
    """The worker starts arq again after a lost connection; its metrics server must not stand
    in the way of that start (the port is its own), and must keep answering throughout."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    server.start()
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": server.url,
        "REACTOR_REDIS_PREFIX": "restart:",
        "REACTOR_LOG_FORMAT": "json",
        "REACTOR_RECONCILE_INTERVAL_SECONDS": "0",
        "REACTOR_WORKER_METRICS_PORT": str(metrics_port),
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def wait_for(done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not done():
            assert worker.poll() is None, f"{what}: the worker ended\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{what}: not in 30 s\n{log.read_text()}"
            time.sleep(0.1)

    def beating() -> bool:
        with redis.Redis.from_url(server.url) as probe:
            try:
                return bool(probe.exists("restart:queue:health-check"))
            except redis.RedisError:
                return False

    try:
        wait_for(beating, "first start")
        _scrape(metrics_port)
        server.kill()
        wait_for(lambda: "starting the worker again" in log.read_text(), "lost Redis")
        server.start()  # same port, empty: the health key is the restarted worker's
        wait_for(beating, "start after the restart")
        assert "reactor_job_attempts_total" in _scrape(metrics_port)
        assert "REACTOR_WORKER_METRICS_PORT" not in log.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0, log.read_text()
        with pytest.raises(OSError):
            _scrape(metrics_port)  # stopped with the process's last run
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        server.stop()
