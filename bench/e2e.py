"""End-to-end benchmark: webhook in -> reaction visible in the simulator.

    .venv/bin/python bench/e2e.py [--json] [--rate 100] [--seconds 10] [--events 1000]
                                  [--workers 2] [--concurrency 20] [--latency-ms 20]
                                  [--rounds 3] [--throughput-only] [--log-dir DIR]

One embedded Redis (append-only file, fsync every second), the simulator with ``--latency-ms``
of latency on every API call, one web process and one worker process running the stamp
reaction (``bench/reactions.py``: one footer comment per page edit, through the real client
with its budget, effect ledger, per-content order and event records). The simulator sends a
``comment_created`` webhook for each of our comments, as Confluence does; during the latency
run those are ingested and ignored like in production (double the events).

1. Latency: signed ``page_updated`` webhooks at ``--rate`` per second for ``--seconds``
   (open loop, spread over 100 pages); an event's latency runs from its scheduled send time
   to the ``createdAt`` of its comment in the simulator. ``p50_ms``, ``p99_ms``.
2. Throughput: ``--events`` events queued first (web process stopped, so no echo events),
   then one worker process is started; ``reactions_per_s_per_worker`` counts comments per
   second between the first and the last.
3. Yardstick: the same number of comments made by a bare arq worker (``bench/bare_worker.py``)
   with the same concurrency, same signed HTTP call, none of our machinery. Steps 2 and 3
   alternate ``--rounds`` times; each figure is the median over the rounds (ratios are
   taken per round, ours and bare back to back, then the median).
   ``overhead_ratio`` = ours / bare (1.0 means no overhead). ``worker_cpu_ms`` and
   ``bare_cpu_ms`` are each worker process's CPU time per comment over the same span, and
   ``cpu_ratio`` = bare / ours: the same comparison, far less sensitive to a busy machine.

The simulator's burst limits and the budget's calls-per-second cap are lifted for the
throughput runs (they are policies, not overhead); the points budget still runs on every call.
``lost`` and ``duplicated`` compare acknowledged events with comments (both must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arq import create_pool  # noqa: E402
from arq.connections import RedisSettings  # noqa: E402

from app import redis as redis_conn  # noqa: E402
from app.atlassian.events import from_connect  # noqa: E402
from app.queue import EventQueue  # noqa: E402
from bench.stack import Driver, Stack, page_body  # noqa: E402

PAGES = 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


async def comment_times(stack: Stack, pages: list[str]) -> dict[str, list[float]]:
    """Event id (or body, for the bare worker) -> creation times of its comments (epoch ms)."""
    found: dict[str, list[float]] = {}
    for page in pages:
        for comment in await stack.comments(page):
            text = comment["body"]["storage"]["value"]
            key = text.rsplit(" ", 1)[-1].removesuffix("</p>")
            found.setdefault(key, []).append(epoch_ms(comment["version"]["createdAt"]))
    return found


async def app_posts(stack: Stack) -> int:
    calls = (await stack.counters())["calls"]
    return int(calls.get("POST /wiki/api/v2/footer-comments 201", 0))


async def latency(stack: Stack, pages: list[str], rate: float, seconds: float) -> dict[str, Any]:
    tenant = stack.tenants[0]
    driver = Driver(stack)
    total = int(rate * seconds)
    sent: dict[str, float] = {}
    statuses: list[int] = []
    start = time.time() + 0.2

    async def one(i: int) -> None:
        page, version = pages[i % len(pages)], 2 + i // len(pages)
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.time()))
        statuses.append(await driver.send(tenant, page, version))
        sent[from_connect(tenant, "page_updated", page_body(page, version)).id] = due * 1000

    await asyncio.gather(*(one(i) for i in range(total)))
    await driver.aclose()
    deadline = time.monotonic() + 60
    while await app_posts(stack) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    made = await comment_times(stack, pages)
    latencies = [made[e][0] - t for e, t in sent.items() if e in made]
    return {
        "events": total,
        "acknowledged": sum(1 for s in statuses if 200 <= s < 300),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "lost": sum(1 for e in sent if e not in made),
        "duplicated": sum(1 for e in sent if len(made.get(e, [])) > 1),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    """One throughput run: comments per second; the worker's and Redis's CPU per comment."""

    def __init__(self, first: float, last: float, cpu: float, redis_cpu: float, count: int):
        self.rate = (count - 1) / (last - first)
        self.cpu_ms = 1000 * cpu / max(1, count - 1)
        self.redis_cpu_ms = 1000 * redis_cpu / max(1, count - 1)


async def wait_posts(stack: Stack, target: int, pid: int, timeout: float = 300) -> Run:
    """From the first new comment to the ``target``-th: rate and the CPU ``pid`` used."""
    assert stack.redis is not None and stack.redis.process is not None
    redis_pid = stack.redis.process.pid
    base = await app_posts(stack)
    first = None
    cpu_first = redis_first = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = await app_posts(stack) - base
        now = time.monotonic()
        if count and first is None:
            first, cpu_first, redis_first = now, cpu_seconds(pid), cpu_seconds(redis_pid)
        if count >= target:
            cpu = cpu_seconds(pid) - cpu_first
            redis_cpu = cpu_seconds(redis_pid) - redis_first
            return Run(first or now, now, cpu, redis_cpu, count)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{target} comments not made within {timeout}s")


async def ours(stack: Stack, pages: list[str], events: int, first_version: int = 1000) -> Run:
    redis = redis_conn.connect(str(stack.redis_url))
    queue = EventQueue(redis, stack.settings())
    tenant = stack.tenants[0]
    for i in range(events):
        page, version = pages[i % len(pages)], first_version + i // len(pages)
        await queue.put(from_connect(tenant, "page_updated", page_body(page, version)))
    await redis.aclose()
    name = f"worker{len(stack.procs)}"
    proc = stack.start_worker(len(stack.procs))
    run = await wait_posts(stack, events, proc.pid)
    stack.terminate(name)  # SIGTERM: it ends its last runs (a kill would hold their pages)
    return run


async def bare(stack: Stack, pages: list[str], events: int, concurrency: int) -> Run:
    queue = f"{stack.prefix}bare"
    pool = await create_pool(RedisSettings.from_dsn(str(stack.redis_url)), default_queue_name=queue)
    for i in range(events):
        await pool.enqueue_job("post", pages[i % len(pages)], f"<p>bare {i}</p>")
    await pool.aclose()
    redis = redis_conn.connect(str(stack.redis_url))
    from app.tenants import TenantStore

    tenant = await TenantStore(redis, stack.settings()).get(stack.tenants[0])
    await redis.aclose()
    assert tenant is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BARE_REDIS_URL": str(stack.redis_url),
        "BARE_QUEUE": queue,
        "BARE_CONCURRENCY": str(concurrency),
        "BARE_SITE": tenant.base_url.rstrip("/"),
        "BARE_ISSUER": "confluence-reactor",
        "BARE_SECRET": tenant.shared_secret,
    }
    out: Any = subprocess.DEVNULL
    if stack.log_dir is not None:
        out = (stack.log_dir / "bare.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_worker"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        return await wait_posts(stack, events, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = {
        "REACTOR_BUDGET_BURST_PER_SECOND": "0",
        "REACTOR_BUDGET_PACING": "false",
        "REACTOR_BUDGET_POINTS_PER_HOUR": "10000000",
        "REACTOR_WORKER_CONCURRENCY": str(args.concurrency),
    }
    log_dir = Path(args.log_dir) if args.log_dir else None
    stack = Stack(
        work, webs=1, workers=args.workers, concurrency=args.concurrency, env=env, log_dir=log_dir
    )
    stack.start()
    try:
        await stack.install(1)
        async with stack.sim() as sim:
            limits = {"appQuota": 10_000_000, "burst": {"GET": 100_000, "POST": 100_000}}
            (await sim.put("/_sim/ratelimit", json=limits)).raise_for_status()
        pages = await stack.pages(PAGES)
        await stack.faults(latency_ms=args.latency_ms)
        result: dict[str, Any] = {
            "latency_ms_simulated": args.latency_ms,
            "rate": args.rate,
            "workers": args.workers,
        }
        if not args.throughput_only:
            result.update(await latency(stack, pages, args.rate, args.seconds))
        # SIGTERM: the workers finish what they run (a killed worker's job would hold its
        # page's line until its claim expires, after the job timeout).
        for n in range(args.workers):
            stack.terminate(f"worker{n}")
        # Throughput counts our machinery per reaction: with the web process gone, the
        # simulator's comment_created webhooks for our own comments are not ingested.
        stack.kill("web0")
        # Ours and the yardstick alternate, round after round, so both see the same machine.
        mine: list[Run] = []
        yardstick: list[Run] = []
        for n in range(args.rounds):
            mine.append(await ours(stack, pages, args.events, 1000 + n * args.events))
            yardstick.append(await bare(stack, pages, args.events, args.concurrency))
        pairs = list(zip(mine, yardstick, strict=True))
        rate, bare_rate = median([r.rate for r in mine]), median([r.rate for r in yardstick])
        cpu, bare_cpu = median([r.cpu_ms for r in mine]), median([r.cpu_ms for r in yardstick])
        result.update(
            concurrency=args.concurrency,
            throughput_events=args.events,
            rounds=args.rounds,
            reactions_per_s_per_worker=round(rate, 1),
            bare_reactions_per_s=round(bare_rate, 1),
            overhead_ratio=round(median([a.rate / b.rate for a, b in pairs]), 3),
            worker_cpu_ms=round(cpu, 2),
            bare_cpu_ms=round(bare_cpu, 2),
            cpu_ratio=round(median([b.cpu_ms / a.cpu_ms for a, b in pairs]), 3),
            redis_cpu_ms=round(median([r.redis_cpu_ms for r in mine]), 2),
            bare_redis_cpu_ms=round(median([r.redis_cpu_ms for r in yardstick]), 2),
            overhead_ratios=[round(a.rate / b.rate, 3) for a, b in pairs],
        )
        return result
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=1000, help="events of the throughput runs")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (ours, bare)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (latency)")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--log-dir", help="keep each process's output in this folder")
    parser.add_argument(
        "--throughput-only", action="store_true", help="skip the latency run (steps 2 and 3 only)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"{name:28} {value}")


if __name__ == "__main__":
    main()
