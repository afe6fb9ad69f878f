"""Points budget benchmark: several worker processes share one Redis budget against the
Confluence simulator on its accelerated clock, four tenants with unequal demand (one at 100x),
a quota well below demand, across a simulated UTC hour boundary.

    .venv/bin/python bench/budget.py [--json] [--processes 3] [--hours 2] [--scale 120]
                                     [--world sim|standin] [--no-fairness] [--light-share 1.2]

Prints ``utilization`` (points the server charged / quota, over hours when demand exceeded
it; the last hour's quota only for the part of it the run covered), ``n429``, ``overspend``
(points charged beyond the quota), ``jain_fairness`` (the worst hour's Jain index over the
admitted points of tenants whose demand exceeded a fair share) and
``light_tenant_p95_wait_s`` (simulated seconds from arrival to admission; jobs still waiting
at the end count with their wait so far).

The server (``--world sim``, the default): ``simulator/`` in its own process
(``bench/budget_sim.py``) with the app quota ``--quota``; each tenant is a Forge installation
of one app on the simulated site, so the simulator meters all four under the one app quota,
as Confluence meters every site of an app. Each worker job is a real ``ConfluenceClient`` call
(a page read, a list of 1..24 pages with ``limit=25``, or a footer comment) whose budget hook
is the process's ``RedisBudget``; the client reads the simulator's ``X-RateLimit-*`` headers
and settles with them. ``utilization``, ``overspend`` and ``n429`` come from the simulator's
``/_sim/counters`` (points per app and UTC hour, calls answered 429), never from our records;
the per-tenant admitted points for fairness are the workers' (the server does not split the
app's points by installation).

Clocks: the simulator's ``Clock`` and the budget's injected clock (``RedisBudget(clock=...)``,
which the Lua scripts take instead of Redis ``TIME``) are one function of the wall clock,
``SIM_START + (time.time() - t0) * scale``, with ``t0`` chosen by the driver before either
side starts; setup happens before ``t0`` (simulated hour 11). In production both sides read
real UTC (Redis ``TIME`` and Atlassian's clock); here they agree exactly, so the figures do not
measure clock skew at the hour boundary. Every latency is scaled too: 5 ms of real call time
is 0.6 simulated seconds at ``--scale 120``.

``--world standin`` keeps the earlier comparison: a points counter in Redis
(``bench/budget_world.py``) with the job's drawn cost, on a stepped clock by default (time
moves once every due job was tried, so machine load cannot distort it) or ``--clock
accelerated``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from app import redis as redis_conn
from app.budget.hook import Priority
from app.budget.model import BudgetConfig, jain_index
from app.embedded_redis import EmbeddedRedis, free_port
from bench import budget_sim
from bench.budget_world import HOUR_MS, MEAN_ACTUAL_POINTS, draw_job

SIM_START = 1_795_780_800.0  # 2026-11-27T12:00:00Z, the top of a UTC hour
TENANTS = ("heavy", "light-1", "light-2", "light-3")
HEAVY_FACTOR = 100
WORKER = Path(__file__).with_name("budget_worker.py")
SIM = Path(__file__).with_name("budget_sim.py")


def budget_config(args: argparse.Namespace) -> BudgetConfig:
    fair = not args.no_fairness
    return BudgetConfig(
        points_per_hour=args.quota,
        pacing=True,
        pacing_lead_seconds=60,
        burst_per_second=50,
        backlog_window_seconds=30 if fair else 0.0,  # 0: fair shares off
        # the grace covers how long the job layer takes to try a tenant's next job: real
        # seconds, so on the accelerated clock it is scaled like every latency
        backlog_grace_seconds=max(2.0, 0.03 * args.scale) if fair else 0.0,
        # on the stepped clock time stands still while a job waits in-process: defer instead
        max_wait_seconds=1.0 if args.clock == "accelerated" else 0.0,
    )


class Arrivals:
    """Poisson arrivals per tenant; ``demand`` holds points per hour (ms // HOUR_MS) and tenant."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = random.Random(args.seed)
        self.prefix = args.prefix
        light_points_per_hour = args.light_share * args.quota / len(TENANTS)
        self.rates = {t: light_points_per_hour / MEAN_ACTUAL_POINTS / 3600 for t in TENANTS}
        self.rates["heavy"] *= HEAVY_FACTOR
        self.next_at = {t: SIM_START + self.rng.expovariate(self.rates[t]) for t in TENANTS}
        self.demand: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    async def until(self, client: Redis, now: float) -> None:
        """Enqueue every job that arrives by ``now`` (simulated epoch seconds)."""
        pipe = client.pipeline(transaction=False)
        for tenant in TENANTS:
            while self.next_at[tenant] <= now:
                at_ms = round(self.next_at[tenant] * 1000)
                job = draw_job(self.rng, tenant, at_ms)
                self.demand[at_ms // HOUR_MS][tenant] += job.actual
                pipe.rpush(f"{self.prefix}bench:q:{job.lane}", job.encode())
                pipe.zadd(f"{self.prefix}bench:ready", {job.lane: at_ms}, nx=True)
                self.next_at[tenant] += self.rng.expovariate(self.rates[tenant])
        await pipe.execute()


async def quiescent(client: Redis, prefix: str, now_ms: int) -> bool:
    """No job in flight and none due: every worker has tried all it could at ``now_ms``."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(f"{prefix}bench:busy")
        pipe.zrange(f"{prefix}bench:ready", 0, 0, withscores=True)
        busy, first = await pipe.execute()
    return int(busy or 0) == 0 and (not first or first[0][1] > now_ms)


async def run_clock(
    client: Redis, args: argparse.Namespace, arrivals: Arrivals, t0: float | None
) -> None:
    """Move simulated time to the end: stepped (after each quiet moment) or accelerated
    (from the real time ``t0``, the simulator's origin, or now)."""
    end = SIM_START + args.hours * 3600
    if args.clock == "accelerated":
        real_start = time.time() if t0 is None else t0
        await asyncio.sleep(max(0.0, real_start - time.time()))
        await client.set(f"{args.prefix}bench:start", repr(real_start))
        while (now := SIM_START + (time.time() - real_start) * args.scale) < end:
            await arrivals.until(client, now)
            await asyncio.sleep(0.01)
        await arrivals.until(client, end)
        return
    await client.set(f"{args.prefix}bench:start", repr(time.time()))
    now = SIM_START
    while now < end:
        await arrivals.until(client, now)
        await client.set(f"{args.prefix}bench:now", round(now * 1000))
        while not await quiescent(client, args.prefix, round(now * 1000)):
            await asyncio.sleep(0.002)
        now = min(end, now + args.step)
    await client.set(f"{args.prefix}bench:now", round(end * 1000))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def covered(hour: int, start: float, hours: float) -> float:
    """The fraction of UTC ``hour`` (hours since the epoch) that a run of ``hours`` simulated
    hours from ``start`` (epoch seconds) covered: 1.0 for a whole hour, less for the last."""
    begin, end = max(hour * 3600.0, start), min((hour + 1) * 3600.0, start + hours * 3600)
    return max(0.0, end - begin) / 3600


def utilization(spent: dict[int, int], *, quota: int, start: float, hours: float) -> float:
    """Points the server charged over the quota of the hours in ``spent``, each hour's quota
    taken for the part of it the run covered (a run stopped 12 minutes into its last hour
    could not use that hour's whole quota)."""
    available = sum(quota * covered(h, start, hours) for h in spent)
    return round(sum(spent.values()) / available, 4) if available else 0.0


def hour_label(hour: int) -> str:
    """The simulator's name of a UTC hour (hours since the epoch)."""
    return time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(hour * 3600))


async def collect(
    client: Redis,
    args: argparse.Namespace,
    demand: dict[int, dict[str, int]],
    server: httpx.AsyncClient | None,
) -> dict[str, Any]:
    """The figures: points and 429s from the server's counters (the simulator's, or the
    stand-in's), admissions and waits from the workers' records."""
    prefix, quota = args.prefix, args.quota
    admitted: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_priority: dict[int, list[float]] = defaultdict(list)
    per_5min: dict[int, list[int]] = defaultdict(lambda: [0] * 12)
    for raw in await client.lrange(f"{prefix}bench:admits", 0, -1):  # type: ignore[misc]
        tenant, arrival, at, charged, _status, priority = raw.decode().split("|")
        admitted[int(at) // HOUR_MS][tenant] += int(charged)
        per_5min[int(at) // HOUR_MS][int(at) % HOUR_MS // 300_000] += int(charged)
        if tenant != "heavy":
            by_priority[int(priority)].append((int(at) - int(arrival)) / 1000)
    end_ms = (SIM_START + args.hours * 3600) * 1000
    for tenant in TENANTS[1:]:
        for level in Priority:
            lane = f"{prefix}bench:q:{tenant}/{int(level)}"
            for raw in await client.lrange(lane, 0, -1):  # type: ignore[misc]
                wait = (end_ms - int(raw.decode().split("|")[0])) / 1000
                by_priority[int(level)].append(wait)
    waits = [w for values in by_priority.values() for w in values]
    hours = sorted(demand)
    if server is None:
        spent = {
            h: int(await client.get(f"{prefix}bench:server:{h * HOUR_MS}") or 0) for h in hours
        }
        n429 = int(await client.get(f"{prefix}bench:server:n429") or 0)
    else:
        by_hour, n429, _ = await budget_sim.server_figures(server)
        spent = {h: by_hour.get(hour_label(h), 0) for h in hours}
    scarce = [h for h in hours if sum(demand[h].values()) > quota]
    jains = {}
    for h in scarce:
        backlogged = [t for t in TENANTS if demand[h][t] > quota / len(TENANTS)]
        jains[h] = jain_index(admitted[h][t] for t in backlogged)
    deferrals = await client.hgetall(f"{prefix}bench:deferrals")  # type: ignore[misc]
    return {
        "utilization": utilization(
            {h: spent[h] for h in scarce}, quota=quota, start=SIM_START, hours=args.hours
        ),
        "n429": n429,
        "overspend": sum(max(0, spent[h] - quota) for h in hours),
        "jain_fairness": round(min(jains.values()), 4),
        "light_tenant_p95_wait_s": round(percentile(waits, 0.95), 1),
        "light_tenant_p50_wait_s": round(percentile(waits, 0.50), 1),
        "light_tenant_p95_wait_s_by_priority": {
            Priority(p).name.lower(): round(percentile(by_priority[p], 0.95), 1)
            for p in sorted(by_priority)
        },
        "per_hour": [
            {
                "hour_utc": time.strftime("%H:%M", time.gmtime(h * 3600)),
                "quota": quota,
                "covered": round(covered(h, SIM_START, args.hours), 4),
                "server_spent": spent[h],
                "demand": dict(demand[h]),
                "admitted": dict(admitted[h]),
                "admitted_per_5min": per_5min[h],
                "jain": round(jains.get(h, 1.0), 4),
            }
            for h in hours
        ],
        "deferrals": {k.decode(): int(v) for k, v in deferrals.items()},
    }


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    client = redis_conn.connect(args.redis_url)
    opts = {
        "redis_url": args.redis_url,
        "prefix": args.prefix,
        "quota": args.quota,
        "world": args.world,
        "clock": args.clock,
        "scale": args.scale,
        "sim_start": SIM_START,
        "end_ms": round((SIM_START + args.hours * 3600) * 1000),
        "coroutines": args.coroutines,
        "config": dataclasses.asdict(budget_config(args)),
    }
    procs: list[subprocess.Popen[bytes]] = []
    server: httpx.AsyncClient | None = None
    t0: float | None = None
    if args.world == "sim":
        # the simulator's clock reaches SIM_START at t0; setup happens before, in hour 11
        t0 = time.time() + args.setup_seconds
        port = free_port()
        sim_args = [port, args.quota, args.scale, t0, SIM_START]
        procs.append(subprocess.Popen([sys.executable, str(SIM), *map(repr, sim_args)]))
        server = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
    procs += [
        subprocess.Popen([sys.executable, str(WORKER), json.dumps(opts)])
        for _ in range(args.processes)
    ]
    try:
        if server is not None:
            world = await budget_sim.prepare(server, TENANTS)
            await client.set(f"{args.prefix}bench:world", json.dumps(world.as_dict()))
        deadline = time.monotonic() + 60
        while int(await client.get(f"{args.prefix}bench:ready_workers") or 0) < args.processes:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            await asyncio.sleep(0.05)
        if t0 is not None and time.time() > t0:
            raise RuntimeError("setup took longer than --setup-seconds; raise it")
        started = max(time.time(), t0 or 0.0)
        arrivals = Arrivals(args)
        await run_clock(client, args, arrivals, t0)
        for proc in procs[-args.processes :]:
            proc.wait(timeout=120)
        result = await collect(client, args, arrivals.demand, server)
        result["real_seconds"] = round(time.time() - started, 1)
        if server is not None:
            result["server_calls"] = (await budget_sim.server_figures(server))[2]
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        if server is not None:
            await server.aclose()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--world",
        choices=("sim", "standin"),
        default="sim",
        help="sim: ConfluenceClient calls to simulator/ (default); "
        "standin: the Redis points counter of bench/budget_world.py",
    )
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--coroutines", type=int, default=4, help="concurrent jobs per process")
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours (from 12:00Z)")
    parser.add_argument(
        "--clock",
        choices=("stepped", "accelerated"),
        default=None,
        help="stepped: time advances once every due job was tried (load-independent); "
        "accelerated: wall time x --scale, like the simulator's clock",
    )
    parser.add_argument("--scale", type=float, default=120.0, help="accelerated: sim s per s")
    parser.add_argument(
        "--setup-seconds",
        type=float,
        default=10.0,
        help="sim: real seconds for setup before the simulated 12:00",
    )
    parser.add_argument("--step", type=float, default=5.0, help="stepped: simulated s per step")
    parser.add_argument("--quota", type=int, default=6000, help="points per simulated hour")
    parser.add_argument(
        "--light-share",
        type=float,
        default=1.2,
        help="each light tenant's demand as a multiple of a fair share",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-fairness",
        action="store_true",
        help="baseline: the same run with fair shares switched off",
    )
    parser.add_argument("--redis-url", default=None, help="default: an embedded Valkey")
    parser.add_argument("--prefix", default=None)
    args = parser.parse_args()
    if args.clock is None:
        args.clock = "accelerated" if args.world == "sim" else "stepped"
    if args.world == "sim" and args.clock != "accelerated":
        parser.error("the simulator runs on an accelerated clock only")
    args.prefix = args.prefix or f"bench{uuid.uuid4().hex[:8]}:"
    server = None
    if args.redis_url is None:
        server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="budget-bench-")), appendonly=False)
        server.start()
        args.redis_url = server.url
    try:
        result = asyncio.run(drive(args))
    finally:
        if server is not None:
            server.stop()
    result = {
        "server": "simulator/ (Forge installations of one app, ConfluenceClient calls)"
        if args.world == "sim"
        else "STAND-IN points server in Redis (bench/budget_world.py), not simulator/",
        "processes": args.processes,
        "coroutines_per_process": args.coroutines,
        "tenants": {t: (HEAVY_FACTOR if t == "heavy" else 1) for t in TENANTS},
        "quota_per_hour": args.quota,
        "simulated_hours": args.hours,
        "fairness": not args.no_fairness,
        "light_share": args.light_share,
        "clock": args.clock if args.clock == "stepped" else f"accelerated x{args.scale:g}",
        **result,
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:26} {json.dumps(value) if isinstance(value, dict | list) else value}")


if __name__ == "__main__":
    main()
