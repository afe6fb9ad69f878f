"""One worker process of ``bench/budget.py``: coroutines that pick a job, reserve its points,
call the stand-in server, settle, and record the admission.

``python bench/budget_worker.py '<json options>'`` (the driver starts it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import redis as redis_conn
from app.budget.hook import BudgetExhausted, Observation, Priority
from app.budget.model import BudgetConfig
from app.budget.redis_budget import RedisBudget
from app.settings import Settings
from bench.budget_world import (
    PICK_LUA,
    RECORD_LUA,
    REQUEUE_LUA,
    SERVER_LUA,
    Job,
    SimClock,
    SteppedClock,
)

LATENCY_S = 0.3  # simulated seconds per Confluence call on the accelerated clock


async def run(opts: dict[str, Any]) -> None:
    url, prefix, quota = opts["redis_url"], opts["prefix"], opts["quota"]
    client = redis_conn.connect(url)
    settings = Settings(redis_url=url, redis_prefix=prefix, _env_file=None)
    await client.incr(f"{prefix}bench:ready_workers")
    while (start := await client.get(f"{prefix}bench:start")) is None:
        await asyncio.sleep(0.01)
    stepped = opts["clock"] == "stepped"
    clock: Callable[[], float]
    if stepped:
        stepped_clock = SteppedClock(opts["sim_start"])
        clock = stepped_clock
    else:
        clock = SimClock(opts["sim_start"], float(start), opts["scale"])
    budget = RedisBudget(
        client,
        settings,
        config=BudgetConfig(**opts["config"]),
        clock=clock,
        time_scale=opts["scale"],
    )
    pick, requeue, record, server = (
        client.register_script(s) for s in (PICK_LUA, REQUEUE_LUA, RECORD_LUA, SERVER_LUA)
    )
    end_ms = opts["end_ms"]

    async def call_server(job: Job) -> Observation:
        status, remaining, retry = await server(
            args=[prefix, round(clock() * 1000), job.actual, quota]
        )
        if not stepped:
            await asyncio.sleep(LATENCY_S / opts["scale"])
        limited = int(status) == 429
        return Observation(
            status=int(status),
            limit=quota,
            remaining=int(remaining),
            near_limit=int(remaining) < 0.2 * quota,
            retry_after=float(retry) if limited else None,
            reason="confluence-quota-global-based" if limited else None,
            actual_cost=job.actual,
        )

    async def attempt(job: Job) -> None:
        try:
            reservation = await budget.reserve(job.tenant, job.estimate, Priority(job.priority))
        except BudgetExhausted as exc:
            retry_ms = round(exc.retry_at * 1000)
            await requeue(args=[prefix, job.lane, job.encode(), retry_ms, exc.reason])
            return
        admitted_ms = round(clock() * 1000)
        observation = await call_server(job)
        await budget.settle(reservation, observation)
        charged = job.actual if observation.status != 429 else 0
        await record(args=[prefix, f"{job.tenant}|{job.arrival_ms}|{admitted_ms}|{charged}"])

    async def loop() -> None:
        while True:
            now = "" if stepped else str(round(clock() * 1000))
            lane, raw, seen = await pick(args=[prefix, now])
            now_ms = float(seen)
            if now_ms >= end_ms:
                return
            if stepped:
                stepped_clock.now = now_ms / 1000
            if not lane:
                wake = float(raw) if float(raw) >= 0 else now_ms + 1000
                real = 0.003 if stepped else (wake - now_ms) / 1000 / opts["scale"]
                await asyncio.sleep(min(0.02, max(0.001, real)))
                continue
            await attempt(Job.decode(lane.decode().partition("/")[0], raw.decode()))

    await asyncio.gather(*(loop() for _ in range(opts["coroutines"])))
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(run(json.loads(sys.argv[1])))
