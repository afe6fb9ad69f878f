"""CPU per request of the ingest path, in-process (no HTTP server, no load generator).

    .venv/bin/python bench/ingest_cpu.py [--requests 5000] [--target real|bare] [--profile FILE]
                                         [--fresh-tokens]

Calls the ASGI app directly with validly signed Connect ``page_updated`` webhooks of distinct
pages, 50 at a time (so queue batching behaves as under load), against an embedded Redis with
an append-only file, and prints the process CPU time per request, then the Redis server's (with
the rewrites of its file) and the bytes its file grew by per request. The webhooks share one
token, as those Confluence signs within one second do; ``--fresh-tokens`` gives each its own
(another acting user), so every one is verified in full: the verified-token cache never hits.
``--profile FILE`` writes a cProfile dump of the same run (read it with ``python -m pstats
FILE``). A quick way to see what a change to the hot path buys without the noise of a shared
machine's scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from starlette.types import ASGIApp, Message  # noqa: E402

from app.atlassian.connect_jwt import encode_connect_token  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from app.logs import configure_logging  # noqa: E402
from app.main import create_app, freeze_heap  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench import bare, loadgen  # noqa: E402
from bench.ingest import CLIENT_KEY, cpu_seconds, install_tenant  # noqa: E402

BATCH = 50


async def call(app: ASGIApp, path: str, token: str, body: bytes) -> int:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"JWT {token}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def drive(app: ASGIApp, tokens: list[str], count: int, label: str) -> tuple[float, int]:
    ok = 0
    start = time.process_time()
    for first in range(0, count, BATCH):
        batch = range(first, min(count, first + BATCH))
        ids = [loadgen.content_id(label, 0, i) for i in batch]
        bodies = [(loadgen.BODY % ((page,) * 3)).encode() for page in ids]
        calls = (
            call(app, loadgen.PATH, tokens[i % len(tokens)], body)
            for i, body in zip(batch, bodies, strict=True)
        )
        codes = await asyncio.gather(*calls)
        ok += sum(1 for c in codes if 200 <= c < 300)
    return (time.process_time() - start) / count * 1e6, ok


def aof_bytes(data_dir: Path) -> int:
    """Bytes of the embedded server's append-only files so far."""
    return sum(f.stat().st_size for f in data_dir.glob("appendonlydir/*") if f.is_file())


async def measure(
    args: argparse.Namespace, settings: Settings, secret: str, server: EmbeddedRedis
) -> None:
    app: ASGIApp = bare.app if args.target == "bare" else create_app(settings)
    freeze_heap()  # as app.main.factory does in the server
    users = range(args.requests) if args.fresh_tokens else range(1)
    tokens = [
        encode_connect_token(
            issuer=CLIENT_KEY,
            secret=secret,
            method="POST",
            url=loadgen.PATH,
            lifetime=3600,
            subject=f"712020:user-{n}",
        )
        for n in users
    ]
    lifespan = getattr(app, "router", None)
    assert lifespan is not None
    async with lifespan.lifespan_context(app):
        await drive(app, tokens[-1:], 500, "warm")
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        assert server.process is not None
        pid = server.process.pid
        redis_cpu, aof = cpu_seconds(pid, children=True), aof_bytes(server.data_dir)
        cpu, ok = await drive(app, tokens, args.requests, uuid.uuid4().hex[:6])
        await asyncio.sleep(1.2)  # the server writes its append-only file once per loop turn
        redis_cpu = cpu_seconds(pid, children=True) - redis_cpu
        aof = aof_bytes(server.data_dir) - aof
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
    tokens_used = "fresh tokens" if args.fresh_tokens else "one token"
    print(
        f"{args.target}: {cpu:.1f} us CPU/request, {ok}/{args.requests} answered 2xx"
        f" ({tokens_used})"
    )
    print(
        f"redis: {redis_cpu / args.requests * 1e6:.1f} us CPU/request (file rewrites included),"
        f" {aof / args.requests:.0f} bytes of append-only file/request"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--target", choices=("real", "bare"), default="real")
    parser.add_argument("--profile", default=None, help="write a cProfile dump here")
    parser.add_argument(
        "--fresh-tokens", action="store_true", help="a token of its own for every request"
    )
    args = parser.parse_args()
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - log lines are rendered, not shown
    configure_logging(os.environ.get("LOG_LEVEL", "info"), "json")
    with tempfile.TemporaryDirectory(prefix="reactor-cpu-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=True)
        server.start()
        try:
            fields: dict[str, Any] = {
                "redis_url": server.url,
                "redis_prefix": f"cpu{uuid.uuid4().hex[:6]}:",
                "secret_key": Fernet.generate_key().decode(),
                "base_url": "http://127.0.0.1:8000",
                "_env_file": None,
            }
            settings = Settings(**fields)
            secret = uuid.uuid4().hex + uuid.uuid4().hex
            asyncio.run(install_tenant(settings, secret))
            import uvloop

            uvloop.run(measure(args, settings, secret, server))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
