"""A worker that lost Redis still stops on SIGTERM (orchestrators must not need SIGKILL).

While Redis is away the worker process starts arq again and again; between two starts no
event loop (and so no arq signal handler) is there, and while one starts arq's handler has no
main task to stop yet. Either way the signal must end the process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from app.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sigterm_stops_a_worker_that_keeps_losing_redis(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": server.url,
        "REACTOR_REDIS_PREFIX": "signals:",
        "REACTOR_LOG_FORMAT": "json",
        "REACTOR_RECONCILE_INTERVAL_SECONDS": "0",
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
    try:
        probe = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 30
        while not probe.exists("signals:queue:health-check"):  # the worker is up
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        probe.close()
        server.kill()
        deadline = time.monotonic() + 40
        while log.read_text().count("starting the worker again") < 2:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        server.stop()
