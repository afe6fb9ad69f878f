"""A worker process for the shutdown tests: ``python -m tests.pipeline.worker_proc``.

Settings come from ``REACTOR_*``; the dispatcher logs each run to ``<prefix>test:log`` and
sleeps ``TEST_FIRST_RUN_SECONDS`` on an event's first run only.
"""

from __future__ import annotations

import asyncio
import os

from app.atlassian.events import Event
from app.settings import load_settings
from workers.dispatch import JobContext
from workers.main import build_worker


def main() -> None:
    settings = load_settings()
    first_run = float(os.environ.get("TEST_FIRST_RUN_SECONDS", "0"))
    log_key = f"{settings.redis_prefix}test:log"

    async def dispatch(event: Event, job: JobContext) -> None:
        runs = await job.redis.incr(f"{settings.redis_prefix}test:runs:{event.id}")
        await job.redis.rpush(log_key, f"start {event.id} {os.getpid()}")  # type: ignore[misc]
        await asyncio.sleep(first_run if runs == 1 else 0)
        await job.redis.rpush(log_key, f"end {event.id} {os.getpid()}")  # type: ignore[misc]

    build_worker(settings, dispatch=dispatch).run()


if __name__ == "__main__":
    main()
