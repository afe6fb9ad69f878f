"""Ingest benchmark: the real Connect webhook endpoint against a bare Starlette 204 endpoint.

    .venv/bin/python bench/ingest.py [--json] [--seconds 5] [--rounds 2] [--redis-url URL]
                                     [--target real|queue]

Both servers run as one uvicorn process each with uvloop and httptools, on the same path; the
real app with the request bounds ``reactor web`` serves with (app.http_protocol, httptools
underneath), the bare endpoint with uvicorn's own httptools protocol.
Each round drives the bare endpoint, then the real one, with the same load: wrk (one thread,
64 connections) sending validly signed ``page_updated`` webhooks of distinct pages for a
tenant installed through ``TenantStore``. Then an open-loop driver sends 1,000 requests/s to
the real app for the latency figures, and to the bare endpoint (``bare_p50_ms``,
``bare_p99_ms``: what the machine and the load generator add on their own). Prints
``reactor_rps``, ``bare_rps`` (best round each), ``ratio``, ``p50_ms``, ``p99_ms`` (at 1,000
req/s), and ``lost``: 2xx answers minus events found in the queue (must be 0).
``reactor_cpu_us`` / ``bare_cpu_us`` are each server's CPU time per answered request and
``redis_cpu_us`` the embedded Redis's per webhook, in the same rounds, its append-only file
rewrites included (the three share the machine with wrk). Redis is an embedded Valkey with an
append-only file (``appendfsync everysec``, as in production) unless ``--redis-url`` is given.
Without wrk (``apt-get install wrk``) a Python closed-loop driver is used; it takes CPU from
the servers, so its ratio is pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402

from app import redis as redis_conn  # noqa: E402
from app.atlassian.connect_jwt import encode_connect_token  # noqa: E402
from app.embedded_redis import EmbeddedRedis, free_port  # noqa: E402
from app.jobstate import Keys  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.tenants import Tenant, TenantStore  # noqa: E402
from bench import loadgen  # noqa: E402

CLIENT_KEY = "bench-site-0001"
TARGETS = {"real": "app.main:factory", "queue": "bench.queue_app:factory"}


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 where unavailable.

    ``children``: with that of its children it has waited for (Redis's append-only file
    rewrites run in a forked child, reaped as soon as it ends).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


# The protocol ``reactor web`` serves the app with: uvicorn's httptools one, within bounds.
BOUNDED = "app.http_protocol:BoundedHttpToolsProtocol"


@contextmanager
def uvicorn(
    target: str, port: int, env: dict[str, str], factory: bool, http: str = "httptools"
) -> Iterator[int]:
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--loop", "uvloop", "--http", http]
    command += ["--log-level", "warning", "--no-access-log", "--no-server-header"]
    if factory:
        command.append("--factory")
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def install_tenant(settings: Settings, secret: str) -> None:
    client = redis_conn.connect(str(settings.redis_url))
    try:
        now = time.time()
        tenant = Tenant(
            client_key=CLIENT_KEY,
            shared_secret=secret,
            base_url="https://bench.atlassian.net/wiki",
            installed_at=now,
            updated_at=now,
        )
        await TenantStore(client, settings).upsert(tenant)
    finally:
        await client.aclose()


async def stored_events(settings: Settings) -> int:
    client = redis_conn.connect(str(settings.redis_url))
    try:
        return int(await client.zcard(f"{settings.redis_prefix}events"))
    finally:
        await client.aclose()


async def drop_prefix(settings: Settings) -> None:
    """Delete what the run stored: every key under its prefix and its events' arq jobs."""
    keys = Keys(settings.redis_prefix)
    client = redis_conn.connect(str(settings.redis_url))
    try:
        # The arq jobs of the queued events are the keys outside the prefix.
        jobs = [Keys.arq_job(m.decode()) async for m, _ in client.zscan_iter(keys.queue)]
        batch = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000)]
        batch += jobs
        for i in range(0, len(batch), 1000):
            await client.delete(*batch[i : i + 1000])
    finally:
        await client.aclose()


def served(rounds: list[loadgen.Throughput]) -> int:
    return max(1, sum(r.requests for r in rounds))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def throughput(
    port: int, tokens: loadgen.Tokens, label: str, args: argparse.Namespace, work: Path
) -> loadgen.Throughput:
    if loadgen.have_wrk():
        url = f"http://127.0.0.1:{port}"
        return loadgen.run_wrk(url, tokens, label, args.seconds, args.connections, work)
    return asyncio.run(
        loadgen.closed_loop("127.0.0.1", port, tokens, label, args.seconds, args.connections)
    )


def run(
    args: argparse.Namespace, redis_url: str, work: Path, redis_pid: int | None = None
) -> dict[str, object]:
    reactor_port, bare_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{reactor_port}"
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": redis_url,
        "REACTOR_REDIS_PREFIX": prefix,
        "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "REACTOR_BASE_URL": base_url,
        "REACTOR_LOG_LEVEL": "info",
    }
    fields: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "secret_key": env["REACTOR_SECRET_KEY"],
        "base_url": base_url,
        "_env_file": None,
    }
    settings = Settings(**fields)
    asyncio.run(install_tenant(settings, secret))
    # Signed as Confluence signs webhooks: one token per second, valid for 180 s.
    length = (args.rounds * 2 + 3) * args.seconds + 60  # generous: server starts, slow rounds
    tokens = loadgen.Tokens(
        lambda second: encode_connect_token(
            issuer=CLIENT_KEY, secret=secret, method="POST", url=loadgen.PATH, now=second
        ),
        length,
    )
    reactor_rounds: list[loadgen.Throughput] = []
    bare_rounds: list[loadgen.Throughput] = []
    acked = 0
    try:
        with (
            uvicorn(
                TARGETS[args.target], reactor_port, env, factory=True, http=BOUNDED
            ) as reactor_pid,
            uvicorn("bench.bare:app", bare_port, env, factory=False) as bare_pid,
        ):
            warm = throughput(reactor_port, tokens, "warm", args, work)
            acked += warm.requests - warm.non_2xx
            cpu = {"bare": 0.0, "reactor": 0.0, "redis": 0.0}
            for n in range(args.rounds):
                before = cpu_seconds(bare_pid)
                bare_rounds.append(throughput(bare_port, tokens, f"b{n}", args, work))
                cpu["bare"] += cpu_seconds(bare_pid) - before
                before = cpu_seconds(reactor_pid)
                redis_before = cpu_seconds(redis_pid, children=True) if redis_pid else 0.0
                result = throughput(reactor_port, tokens, f"r{n}", args, work)
                cpu["reactor"] += cpu_seconds(reactor_pid) - before
                if redis_pid:
                    cpu["redis"] += cpu_seconds(redis_pid, children=True) - redis_before
                reactor_rounds.append(result)
            latencies, ok, other = asyncio.run(
                loadgen.open_loop("127.0.0.1", reactor_port, tokens, "lat", 1000, args.seconds)
            )
            # The same open loop against the bare endpoint: the tail the machine and the load
            # generator add on their own, next to the real app's.
            bare_latencies, _, _ = asyncio.run(
                loadgen.open_loop("127.0.0.1", bare_port, tokens, "blat", 1000, args.seconds)
            )
        stored = asyncio.run(stored_events(settings))
        # wrk counts answered requests only; one cut off at the end may be stored unanswered.
        acked += sum(r.requests - r.non_2xx for r in reactor_rounds) + ok
        reactor_rps = max(r.rps for r in reactor_rounds)
        bare_rps = max(r.rps for r in bare_rounds)
        return {
            "reactor_rps": round(reactor_rps),
            "bare_rps": round(bare_rps),
            "ratio": round(reactor_rps / bare_rps, 3),
            "p50_ms": round(percentile(latencies, 0.50), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "bare_p50_ms": round(percentile(bare_latencies, 0.50), 2),
            "bare_p99_ms": round(percentile(bare_latencies, 0.99), 2),
            # server process CPU per answered request: what bounds the ratio on idle cores
            "reactor_cpu_us": round(cpu["reactor"] / served(reactor_rounds) * 1e6),
            "bare_cpu_us": round(cpu["bare"] / served(bare_rounds) * 1e6),
            # the embedded Redis's CPU per webhook in the same rounds (None with --redis-url)
            "redis_cpu_us": round(cpu["redis"] / served(reactor_rounds) * 1e6)
            if redis_pid
            else None,
            "latency_rate": 1000,
            "latency_non_2xx": other,
            "reactor_non_2xx": sum(r.non_2xx for r in reactor_rounds),
            "socket_errors": sum(r.errors for r in reactor_rounds),
            "acked": acked,
            "stored": stored,
            "lost": max(0, acked - stored),
            "load": f"wrk -t1 -c{args.connections}" if loadgen.have_wrk() else "python",
            "seconds": args.seconds,
            "rounds": args.rounds,
            "target": args.target,
        }
    finally:
        asyncio.run(drop_prefix(settings))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each app")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of embedded")
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default="real",
        help="real: the app's Connect endpoint; queue: the same path without authentication",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reactor-bench-") as tmp:
        work = Path(tmp)
        if args.redis_url:
            result = run(args, args.redis_url, work)
        else:
            server = EmbeddedRedis(work / "redis", appendonly=True)
            server.start()
            try:
                pid = server.process.pid if server.process else None
                result = run(args, server.url, work, pid)
            finally:
                server.stop()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
