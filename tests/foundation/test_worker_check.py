"""``reactor worker --check`` (a container's health check) answers for the workers of its own
host, never for the queue: a hung replica must fail it while another replica runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from app.dashboard import heartbeat
from app.dashboard.heartbeat import Heartbeats
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings
from workers.main import queue_name

ROOT = Path(__file__).resolve().parents[2]


def check(settings: Settings, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert settings.redis_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--check"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_a_worker_of_another_host_does_not_make_this_one_healthy(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    """Another replica beats and refreshes arq's queue-wide key; this container has none."""
    await Heartbeats(redis, settings.redis_prefix).beat(
        "other-container-7-abc123", {"host": "other-container", "pid": 7}
    )
    await redis.set(f"{queue_name(settings)}:health-check", b"alive", ex=60)
    result = check(settings, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    host = socket.gethostname()
    assert result.stderr.strip() == (
        f"reactor: worker: none on this host ({host}) has beaten in the last "
        f"{heartbeat.TTL_SECONDS} s"
    )


async def test_the_check_passes_while_this_host_s_worker_beats_and_fails_once_it_stops(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    class Worker:  # what the heartbeat reads of arq's worker
        max_jobs = 2
        jobs_complete = jobs_failed = 0
        tasks: dict[str, Any] = {}

    ctx: dict[str, Any] = {"redis": redis, "settings": settings, "worker": Worker()}
    await heartbeat.start(ctx)  # what the worker's start-up does
    try:
        beating = check(settings, tmp_path)
        assert beating.returncode == 0, beating.stderr
        assert beating.stdout.strip() == f"ok: worker {ctx['heartbeat_id']} beating"
    finally:
        await heartbeat.stop(ctx)  # what its shutdown does; a hung one's hash expires
    assert check(settings, tmp_path).returncode == 1


@pytest.mark.timeout(60)
def test_the_check_gives_up_on_a_stalled_redis_within_the_redis_timeout(tmp_path: Path) -> None:
    """A Redis that accepts connections but never answers (stopped, a silent partition): the
    probe ends in one line within REACTOR_REDIS_TIMEOUT_SECONDS, never hangs."""
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    server.start()
    assert server.process is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": server.url,
        "REACTOR_REDIS_PREFIX": "stalled:",
        "REACTOR_REDIS_TIMEOUT_SECONDS": "1",
    }
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "worker", "--check"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        took = time.monotonic() - started
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (f"reactor: redis: {server.url} did not answer within 1 s"), (
        result.stderr
    )
    assert took < 10
