"""Worker processes: SIGKILL mid-job runs the event again; SIGTERM lets in-flight jobs finish."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.pipeline.conftest import page_event
from workers.dispatch import JobContext

ROOT = Path(__file__).parents[2]
Spawn = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[Spawn]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(first_run: float, **env: str) -> subprocess.Popen[bytes]:
        assert settings.redis_url is not None
        environ = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REACTOR_REDIS_URL": settings.redis_url,
            "REACTOR_REDIS_PREFIX": settings.redis_prefix,
            "REACTOR_LOG_FORMAT": "console",
            "REACTOR_JOB_TIMEOUT_SECONDS": "2",
            "TEST_FIRST_RUN_SECONDS": str(first_run),
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline.worker_proc"],
            cwd=tmp_path,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def wait_for_log(redis: Redis, key: str, prefix: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [x.decode() for x in await redis.lrange(key, 0, -1)]  # type: ignore[misc]
        if any(line.startswith(prefix) for line in lines):
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line starting {prefix!r} within {timeout}s")


@pytest.mark.timeout(40)
async def test_a_killed_worker_s_event_runs_again(
    redis: Redis, settings: Settings, spawn: Spawn, burst_worker: Callable[..., Worker]
) -> None:
    log_key = f"{settings.redis_prefix}test:log"
    event = page_event(1, 1)
    proc = spawn(first_run=30)
    await EventQueue(redis, settings).put(event)
    await wait_for_log(redis, log_key, f"start {event.id}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    killed_at = time.monotonic()

    reruns: list[str] = []

    async def dispatch(e: object, job: JobContext) -> None:
        reruns.append(job.event_id)

    again = burst_worker(dispatch=dispatch)
    await asyncio.wait_for(again.main(), 20)
    assert reruns == [event.id]
    assert time.monotonic() - killed_at < 10, "claim of a dead worker expires within seconds"
    log = EventLog(redis, settings)
    record = await log.record(event.id)
    assert record is not None and record.state == "done"
    [lost] = await log.attempts(event.id)
    assert (lost.outcome, lost.error.split(":")[0]) == ("interrupted", "WorkerLost")


@pytest.mark.timeout(40)
async def test_sigterm_finishes_in_flight_jobs_and_takes_no_new_ones(
    redis: Redis, settings: Settings, spawn: Spawn
) -> None:
    log_key = f"{settings.redis_prefix}test:log"
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    running, later = page_event(1, 1), page_event(2, 1)
    proc = spawn(first_run=1.0, REACTOR_SHUTDOWN_GRACE_SECONDS="10")
    await queue.put(running)
    await wait_for_log(redis, log_key, f"start {running.id}")
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    await queue.put(later)
    assert await asyncio.to_thread(proc.wait, 15) == 0
    lines = [x.decode() for x in await redis.lrange(log_key, 0, -1)]  # type: ignore[misc]
    assert f"end {running.id} {proc.pid}" in lines, "the in-flight job finished"
    assert not any(later.id in line for line in lines), "no job was taken after SIGTERM"
    assert (await log.record(running.id)).state == "done"  # type: ignore[union-attr]
    assert (await log.record(later.id)).state == "queued"  # type: ignore[union-attr]
