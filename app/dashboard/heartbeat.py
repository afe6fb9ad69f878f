"""Per-worker heartbeats: each worker process writes one short-lived hash every few seconds.

arq's own ``{prefix}queue:health-check`` key is one string that every worker overwrites, so it
cannot tell how many workers are alive. Each worker therefore also writes
``{prefix}worker:<worker id>`` (a hash: host, pid, concurrency, running, started, seen) with a
TTL of three intervals, and adds its id to the set ``{prefix}workers``. The dashboard lists
the ids whose hash still exists and prunes the others.

``reactor worker --check`` (a container's health check) asks the same question for one host:
is a worker whose ``host`` is this machine's (a container's) name still beating? A hung or
frozen worker stops beating and its hash expires, whatever other replicas do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

INTERVAL_SECONDS = 5.0
TTL_SECONDS = int(INTERVAL_SECONDS * 3)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Heartbeats:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.index = f"{prefix}workers"

    def key(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    async def beat(self, worker_id: str, fields: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(worker_id), mapping={**fields, "seen": time.time()})
            pipe.expire(self.key(worker_id), TTL_SECONDS)
            pipe.sadd(self.index, worker_id)
            await pipe.execute()

    async def remove(self, worker_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.key(worker_id))
            pipe.srem(self.index, worker_id)
            await pipe.execute()

    async def alive(self) -> list[dict[str, Any]]:
        """Live workers, most recently seen first; ids whose hash expired are pruned."""
        ids = [_s(i) for i in await self.redis.smembers(self.index)]  # type: ignore[misc]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(self.key(worker_id))
            rows = await pipe.execute()
        out, gone = [], []
        for worker_id, row in zip(ids, rows, strict=True):
            if not row:
                gone.append(worker_id)
                continue
            info: dict[str, Any] = {_s(k): _s(v) for k, v in row.items()}
            info["id"] = worker_id
            for name in ("reactions", "jobs"):
                try:
                    info[name] = json.loads(info.get(name, "[]"))
                except ValueError:
                    info[name] = []
            for name in ("concurrency", "running", "done", "failed", "run_again", "pid"):
                if name in info:
                    info[name] = int(float(info[name]))
            for name in ("seen", "started"):
                if name in info:
                    info[name] = float(info[name])
            out.append(info)
        if gone:
            await self.redis.srem(self.index, *gone)  # type: ignore[misc]
        out.sort(key=lambda w: float(w.get("seen", 0)), reverse=True)
        return out

    async def on_host(self, host: str) -> list[dict[str, Any]]:
        """Live workers running on ``host`` (by hostname: the workers of one container)."""
        return [info for info in await self.alive() if info.get("host") == host]


def describe_reactions(router: Any) -> list[dict[str, Any]]:
    """Loaded reactions of a worker's router (duck-typed: app/ never imports workers/)."""
    out = []
    for registration in router or ():
        filters = getattr(registration, "filters", None)
        shown = {}
        if filters is not None:
            for name in getattr(filters, "__slots__", ()) or vars(filters):
                value = getattr(filters, name, None)
                if value:
                    shown[name] = sorted(value) if isinstance(value, frozenset) else str(value)
        out.append(
            {
                "name": str(getattr(registration, "name", "?")),
                "events": list(getattr(registration, "events", ())),
                "filters": shown,
                "dry_run": getattr(registration, "dry_run", None),
            }
        )
    return out


def worker_stats(worker: Any, ctx: dict[str, Any], started: float) -> dict[str, Any]:
    """What one arq worker publishes in its heartbeat."""
    router = getattr(ctx.get("dispatch"), "router", None)
    tasks = getattr(worker, "tasks", {})
    running = [str(job_id) for job_id, task in tasks.items() if not task.done()]
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "concurrency": int(getattr(worker, "max_jobs", 0) or 0),
        "running": len(running),
        "jobs": json.dumps(running[:20]),
        "done": int(getattr(worker, "jobs_complete", 0)),
        "failed": int(getattr(worker, "jobs_failed", 0)),
        # runs handed back to arq to run again later: a retry after a failed attempt, or a
        # wait (budget, a disabled site, a token); the pipeline's failures show here, since
        # arq's own "failed" counts only runs that raised past the job layer
        "run_again": int(getattr(worker, "jobs_retried", 0)),
        "started": started,
        "reactions": json.dumps(describe_reactions(router)),
    }


async def start(ctx: dict[str, Any]) -> None:
    """Start beating from an arq ``on_startup`` (needs ``ctx["worker"]`` and settings)."""
    settings = ctx["settings"]
    worker = ctx.get("worker")
    worker_id = ctx["heartbeat_id"] = new_worker_id()
    started = time.time()
    # The first beat before start-up ends: the worker is listed as soon as it can take jobs.
    with contextlib.suppress(RedisError, OSError):
        await Heartbeats(ctx["redis"], settings.redis_prefix).beat(
            worker_id, worker_stats(worker, ctx, started)
        )
    ctx["heartbeat"] = asyncio.create_task(
        run(
            ctx["redis"],
            settings.redis_prefix,
            worker_id,
            lambda: worker_stats(worker, ctx, started),
        )
    )


async def stop(ctx: dict[str, Any]) -> None:
    """Stop beating and leave the list at once (from an arq ``on_shutdown``)."""
    task = ctx.pop("heartbeat", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    worker_id = ctx.pop("heartbeat_id", None)
    if worker_id is not None:
        with contextlib.suppress(RedisError, OSError):
            await Heartbeats(ctx["redis"], ctx["settings"].redis_prefix).remove(worker_id)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def run(
    redis: Redis,
    prefix: str,
    worker_id: str,
    stats: Any,
    interval: float = INTERVAL_SECONDS,
) -> None:
    """Beat until cancelled; ``stats()`` returns the fields to publish (running jobs, ...)."""
    beats = Heartbeats(redis, prefix)
    try:
        while True:
            with contextlib.suppress(RedisError, OSError):
                await beats.beat(worker_id, stats())
            await asyncio.sleep(interval)
    finally:
        await asyncio.shield(beats.remove(worker_id))
