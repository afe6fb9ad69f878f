"""One worker process of ``bench/budget.py``: coroutines that pick a job, reserve its points,
make the call, settle, and record the admission.

``python bench/budget_worker.py '<json options>'`` (the driver starts it).

``world: sim`` (the default): every job is a real :class:`ConfluenceClient` call to the
simulator through the tenant's Forge installation, with this process's :class:`RedisBudget`
as the client's budget hook, so the reservation, the headers it settles with and the 429s are
the client's own. ``world: standin``: the call is the stand-in points server of
``bench/budget_world.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import redis as redis_conn
from app.budget.hook import BudgetExhausted, BudgetHook, Observation, Priority, Reservation
from app.budget.model import BudgetConfig
from app.budget.redis_budget import RedisBudget
from app.confluence.client import ConfluenceClient, new_http_client
from app.confluence.errors import ConfluenceError
from app.confluence.site import Site
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

LATENCY_S = 0.3  # stand-in: simulated seconds per Confluence call on the accelerated clock


class Quiet:
    """A logger that drops everything: the benchmark's calls are counted, not logged."""

    def bind(self, **kw: Any) -> Quiet:
        return self

    def debug(self, event: str, **kw: Any) -> None:
        return None

    info = warning = debug


class Watch:
    """The budget hook of one job: the shared budget, plus when it admitted and what it cost."""

    def __init__(self, inner: BudgetHook, clock: Callable[[], float]) -> None:
        self.inner = inner
        self.clock = clock
        self.admitted_ms: int | None = None
        self.observation: Observation | None = None

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        reservation = await self.inner.reserve(tenant, cost, priority)
        self.admitted_ms = round(self.clock() * 1000)
        return reservation

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        self.observation = observation
        await self.inner.settle(reservation, observation)


class SimCalls:
    """Real client calls against the simulator: the job's cost class picks the operation."""

    def __init__(self, opts: dict[str, Any], clock: Callable[[], float]) -> None:
        world = opts["world_data"]
        self.http = new_http_client(max_connections=opts["coroutines"] * 2)
        self.clock = clock
        self.rng = random.Random()
        self.pages: list[str] = world["pages"]
        self.spaces: dict[int, str] = {int(k): v for k, v in world["spaces"].items()}
        self.sites = {
            tenant: Site.forge(
                tenant=tenant,
                api_base_url=world["api_base_url"],
                token=_constant(token),
            )
            for tenant, token in world["tokens"].items()
        }

    async def __call__(self, job: Job, budget: BudgetHook) -> None:
        client = ConfluenceClient(
            self.http,
            self.sites[job.tenant],
            budget,
            priority=Priority(job.priority),
            logger=Quiet(),
            clock=self.clock,
        )
        page = self.rng.choice(self.pages)
        try:
            if job.estimate == 1:
                await client.create_footer_comment("<p>seen</p>", page_id=page)
            elif job.estimate == 2:
                await client.get_page(page, body_format=None)
            else:
                space = self.spaces[job.actual - 1]
                async for _ in client.iter_space_pages(space, limit=job.estimate - 1):
                    pass
        except ConfluenceError:
            pass  # a 429 or another refusal: the observation says which

    async def close(self) -> None:
        await self.http.aclose()


class StandinCalls:
    """Calls to the stand-in points server (``SERVER_LUA``) with the job's drawn cost."""

    def __init__(self, opts: dict[str, Any], clock: Callable[[], float], server: Any) -> None:
        self.opts = opts
        self.clock = clock
        self.server = server

    async def __call__(self, job: Job, hook: BudgetHook) -> None:
        opts, quota = self.opts, self.opts["quota"]
        reservation = await hook.reserve(job.tenant, job.estimate, Priority(job.priority))
        status, remaining, retry = await self.server(
            args=[opts["prefix"], round(self.clock() * 1000), job.actual, quota]
        )
        if opts["clock"] != "stepped":
            await asyncio.sleep(LATENCY_S / opts["scale"])
        limited = int(status) == 429
        observation = Observation(
            status=int(status),
            limit=quota,
            remaining=int(remaining),
            near_limit=int(remaining) < 0.2 * quota,
            retry_after=float(retry) if limited else None,
            reason="confluence-quota-global-based" if limited else None,
            actual_cost=job.actual,
        )
        await hook.settle(reservation, observation)

    async def close(self) -> None:
        return None


def _constant(token: str) -> Callable[[], Awaitable[str]]:
    async def provide() -> str:
        return token

    return provide


async def run(opts: dict[str, Any]) -> None:
    url, prefix = opts["redis_url"], opts["prefix"]
    client = redis_conn.connect(url)
    settings = Settings(redis_url=url, redis_prefix=prefix, _env_file=None)
    await client.incr(f"{prefix}bench:ready_workers")
    while (start := await client.get(f"{prefix}bench:start")) is None:
        await asyncio.sleep(0.01)
    if opts["world"] == "sim":
        opts["world_data"] = json.loads(await client.get(f"{prefix}bench:world") or "{}")
    stepped = opts["clock"] == "stepped"
    stepped_clock = SteppedClock(opts["sim_start"])
    clock: Callable[[], float] = (
        stepped_clock if stepped else SimClock(opts["sim_start"], float(start), opts["scale"])
    )
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
    calls: SimCalls | StandinCalls = (
        SimCalls(opts, clock) if opts["world"] == "sim" else StandinCalls(opts, clock, server)
    )

    async def attempt(job: Job) -> None:
        watch = Watch(budget, clock)
        try:
            await calls(job, watch)
        except BudgetExhausted as exc:
            retry_ms = round(exc.retry_at * 1000)
            # deferrals in an hour's last 5 minutes are counted apart: the reserve releases then
            late = clock() % 3600 >= 3300
            reason = f"{exc.reason}@end" if late else exc.reason
            await requeue(args=[prefix, job.lane, job.encode(), retry_ms, reason])
            return
        obs = watch.observation
        charged = 0 if obs is None or obs.status == 429 else (obs.actual_cost or 0)
        status = 0 if obs is None else obs.status
        record_ = (
            f"{job.tenant}|{job.arrival_ms}|{watch.admitted_ms}|{charged}|{status}|{job.priority}"
        )
        await record(args=[prefix, record_])

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

    try:
        await asyncio.gather(*(loop() for _ in range(opts["coroutines"])))
    finally:
        await calls.close()
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(run(json.loads(sys.argv[1])))
