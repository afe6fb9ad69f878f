"""A whole deployment on one machine, in processes: Redis, the simulator, web and worker replicas.

Used by ``bench/e2e.py`` and the scale-out and fault tests. Each part is a separate process
started the way an operator starts it (uvicorn on ``app.main:factory``, ``python -m app.cli
worker``, ``python -m app.cli sim``); they share one Redis and one key prefix. The app is
installed on the simulator through the real signed-install flow; further tenants are copies of
that tenant under other client keys (same site, same shared secret), so one simulated site can
stand in for several customers. :class:`Driver` sends validly signed Connect webhooks to the web
replicas in turn, as a load balancer would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from app import redis as redis_conn
from app.atlassian.connect_jwt import encode_connect_token
from app.embedded_redis import EmbeddedRedis, free_port
from app.settings import Settings
from app.tenants import Tenant, TenantStore

ROOT = Path(__file__).resolve().parents[1]
SIM_TOKEN = "stack-admin-token"
ADMIN = "admin@example.com"
SIM = [sys.executable, "-m", "app.cli", "sim"]


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start (exit {proc.poll()})") from None
            time.sleep(0.05)


def page_body(page_id: str, version: int, space: str = "ENG") -> dict[str, Any]:
    """A Connect ``page_updated`` body (the shape of tests/fixtures/events/connect/)."""
    return {
        "userAccountId": "712020:stack-user",
        "accountType": "customer",
        "updateTrigger": "edit_page",
        "page": {
            "creatorAccountId": "712020:stack-user",
            "spaceKey": space,
            "modificationDate": int(time.time() * 1000),
            "lastModifierAccountId": "712020:stack-user",
            "id": page_id,
            "title": f"Page {page_id}",
            "contentType": "page",
            "version": version,
        },
        "timestamp": int(time.time() * 1000),
    }


class Stack:
    """Processes of one deployment; ``start()`` then ``stop()`` (also on failure)."""

    def __init__(
        self,
        work: Path,
        *,
        redis_url: str | None = None,
        webs: int = 1,
        workers: int = 1,
        concurrency: int = 20,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.work = work
        self.redis: EmbeddedRedis | None = None
        self.redis_url = redis_url
        self.webs = webs
        self.workers = workers
        self.concurrency = concurrency
        self.prefix = f"stack{uuid.uuid4().hex[:8]}:"
        self.secret_key = Fernet.generate_key().decode()
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.web_ports = [free_port() for _ in range(webs)]
        self.base_url = f"http://127.0.0.1:{self.web_ports[0]}"
        self.extra_env = env or {}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tenants: list[str] = []
        self.shared_secret = ""

    # -- processes ----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        assert self.redis_url is not None
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REACTOR_REDIS_URL": self.redis_url,
            "REACTOR_REDIS_PREFIX": self.prefix,
            "REACTOR_SECRET_KEY": self.secret_key,
            "REACTOR_BASE_URL": self.base_url,
            "REACTOR_CONNECT_INSTALL_KEYS_URL": f"{self.sim_url}/_sim/install-keys",
            "REACTOR_REACTIONS": "bench.reactions",
            "REACTOR_LOOP_GUARD_LIMIT": "1000000",
            "REACTOR_LOG_FORMAT": "console",
            "REACTOR_LOG_LEVEL": "warning",
            "REACTOR_DASHBOARD_TOKEN": "stack-operator-token",
            **self.extra_env,
        }

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        out: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            command, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        try:
            if self.redis_url is None:
                self.redis = EmbeddedRedis(self.work / "redis", appendonly=True)
                self.redis.start()
                self.redis_url = self.redis.url
            sim = self._spawn(
                "sim",
                [*SIM, "--port", str(self.sim_port), "--api-token", SIM_TOKEN],
            )
            for n, port in enumerate(self.web_ports):
                self.start_web(n, port)
            wait_port(self.sim_port, sim, "simulator")
            for n, port in enumerate(self.web_ports):
                wait_port(port, self.procs[f"web{n}"], f"web{n}")
            for n in range(self.workers):
                self.start_worker(n)
            self.wait_workers(self.workers)
        except BaseException:
            self.stop()
            raise

    def start_web(self, n: int, port: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "uvicorn", "app.main:factory", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop"]
        command += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
        return self._spawn(f"web{n}", command)

    def start_worker(self, n: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "app.cli", "worker"]
        return self._spawn(f"worker{n}", [*command, "--concurrency", str(self.concurrency)])

    def wait_workers(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` worker processes have sent their first heartbeat."""
        import redis as sync_redis

        client = sync_redis.Redis.from_url(str(self.redis_url))
        deadline = time.monotonic() + timeout
        try:
            while True:
                alive = list(client.smembers(f"{self.prefix}workers"))  # type: ignore[arg-type]
                ready = sum(1 for m in alive if client.exists(f"{self.prefix}worker:{m.decode()}"))
                if ready >= count:
                    return
                crashed = [n for n, p in self.procs.items() if p.poll() is not None]
                if crashed or time.monotonic() > deadline:
                    raise RuntimeError(f"workers not ready (exited: {crashed})")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, name: str, timeout: float = 30) -> None:
        """Stop one process as an operator does (SIGTERM): a worker finishes its running jobs."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.redis is not None:
            self.redis.stop()

    # -- the site and the tenants ---------------------------------------------------------
    def settings(self) -> Settings:
        return Settings(
            redis_url=self.redis_url,
            redis_prefix=self.prefix,
            secret_key=self.secret_key,
            base_url=self.base_url,
            _env_file=None,
        )

    def sim(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.sim_url, timeout=30)

    async def install(self, tenants: int = 1) -> list[str]:
        """Install the app on the simulator; ``tenants - 1`` more copies of that tenant."""
        async with self.sim() as sim:
            answer = await sim.post(
                "/_sim/apps/connect",
                json={"descriptorUrl": f"{self.base_url}/atlassian-connect.json"},
            )
            if answer.status_code != 201:
                raise RuntimeError(f"install failed: {answer.status_code} {answer.text}")
            await sim.post("/_sim/spaces", json={"key": "ENG", "name": "Engineering"})
        redis = redis_conn.connect(str(self.redis_url))
        try:
            store = TenantStore(redis, self.settings())
            [first] = await store.list()
            self.shared_secret = first.shared_secret
            self.tenants = [first.client_key]
            for n in range(1, tenants):
                copy: Tenant = replace(first, client_key=f"{first.client_key}-copy{n}")
                await store.upsert(copy)
                self.tenants.append(copy.client_key)
        finally:
            await redis.aclose()
        return self.tenants

    async def pages(self, count: int) -> list[str]:
        async with self.sim() as sim:
            made = []
            for n in range(count):
                answer = await sim.post(
                    "/_sim/act/pages",
                    json={"as": ADMIN, "spaceKey": "ENG", "title": f"Load {n}", "body": "x"},
                )
                answer.raise_for_status()
                made.append(str(answer.json()["id"]))
            return made

    async def faults(self, **values: Any) -> None:
        async with self.sim() as sim:
            (await sim.put("/_sim/faults", json=values)).raise_for_status()

    async def comments(self, page_id: str) -> list[dict[str, Any]]:
        """Footer comments of a page, oldest first (the simulator's ids grow)."""
        auth = ("admin@example.com", SIM_TOKEN)
        found: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=self.sim_url, auth=auth, timeout=30) as sim:
            url: str | None = f"/wiki/api/v2/pages/{page_id}/footer-comments"
            params: dict[str, Any] | None = {"body-format": "storage", "limit": 250}
            while url:
                answer = await sim.get(url, params=params)
                answer.raise_for_status()
                data = answer.json()
                found.extend(data["results"])
                url, params = data.get("_links", {}).get("next"), None
        return sorted(found, key=lambda c: int(c["id"]))

    async def counters(self) -> dict[str, Any]:
        async with self.sim() as sim:
            data: dict[str, Any] = (await sim.get("/_sim/counters")).json()
            return data


class Driver:
    """Signed Connect webhooks to the web replicas in turn (a round-robin load balancer)."""

    def __init__(self, stack: Stack, timeout: float = 10) -> None:
        self.stack = stack
        self.urls = itertools.cycle(f"http://127.0.0.1:{p}" for p in stack.web_ports)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self.http = httpx.AsyncClient(timeout=timeout, limits=limits)
        self.tokens: dict[str, str] = {}

    def token(self, tenant: str) -> str:
        if tenant not in self.tokens:
            self.tokens[tenant] = encode_connect_token(
                issuer=tenant,
                secret=self.stack.shared_secret,
                method="POST",
                url=f"{self.stack.base_url}/connect/webhooks/page_updated",
                base_url=self.stack.base_url,
                lifetime=3600,
            )
        return self.tokens[tenant]

    async def send(self, tenant: str, page_id: str, version: int) -> int:
        """POST one page_updated; the HTTP status (0 when no answer came)."""
        url = f"{next(self.urls)}/connect/webhooks/page_updated"
        try:
            answer = await self.http.post(
                url,
                content=json.dumps(page_body(page_id, version)),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"JWT {self.token(tenant)}",
                },
            )
        except httpx.HTTPError:
            return 0
        return answer.status_code

    async def aclose(self) -> None:
        await self.http.aclose()


async def wait_until(check: Any, timeout: float, step: float = 0.1) -> Any:
    """Poll ``await check()`` until it returns something truthy; that value, or raise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
