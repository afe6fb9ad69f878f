"""Shared fixtures: a real Redis, isolated per test; settings; a burst worker; a live web server.

Redis: ``REACTOR_TEST_REDIS_URL`` when set, else one embedded Valkey server started for the
whole run. Each test gets its own key prefix (every key the product writes carries it) and, on
the embedded server, its own database number too. Teardown deletes only keys under the test's
prefix, so a shared Redis keeps whatever it held before.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvicorn
from arq.worker import Worker
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from starlette.applications import Starlette

from app import logs as app_logs
from app import redis as redis_conn
from app.embedded_redis import EmbeddedRedis, free_port
from app.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
EMBEDDED_DATABASES = 64
_db_numbers = itertools.cycle(range(1, EMBEDDED_DATABASES))


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """A test that configures logging (a CLI's ``main``, the app factory) leaves it as found.

    Otherwise its level filter and renderer stay for every later test, and what those see
    depends on the order the tests ran in.
    """
    config = structlog.get_config()
    config["processors"] = list(config["processors"])
    json_info = app_logs._json_info
    yield
    structlog.configure(**config)
    app_logs._json_info = json_info


class RedisTarget:
    """Where a test's Redis lives and whether the fixtures own the server."""

    def __init__(self, url: str, owned: EmbeddedRedis | None) -> None:
        self.url = url
        self.owned = owned


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    url = os.environ.get("REACTOR_TEST_REDIS_URL")
    if url:
        yield RedisTarget(url, None)
        return
    server = EmbeddedRedis(
        tmp_path_factory.mktemp("redis"), appendonly=False, databases=EMBEDDED_DATABASES
    )
    server.start()
    try:
        yield RedisTarget(server.url, server)
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_target: RedisTarget) -> str:
    """A Redis URL for this test; on the embedded server, a fresh database number."""
    if redis_target.owned is None:
        return redis_target.url
    return f"redis://127.0.0.1:{redis_target.owned.port}/{next(_db_numbers)}"


@pytest.fixture
def key_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(redis_url: str, key_prefix: str, secret_key: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        redis_prefix=key_prefix,
        secret_key=secret_key,  # type: ignore[arg-type]
        dashboard_token="test-operator-token",  # type: ignore[arg-type]
        base_url="https://reactor.test",
        state_dir=tmp_path / "state",
        log_format="console",
        _env_file=None,  # type: ignore[call-arg]
    )


async def _delete_prefix(client: Redis, prefix: str) -> None:
    batch: list[Any] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """An asyncio client on the test's Redis; keys under the test prefix are removed after."""
    assert settings.redis_url is not None
    client = redis_conn.connect(settings.redis_url)
    await _delete_prefix(client, settings.redis_prefix)
    try:
        yield client
    finally:
        await _delete_prefix(client, settings.redis_prefix)
        await client.aclose()


@pytest.fixture
def burst_worker(settings: Settings) -> Callable[..., Worker]:
    """Build a worker that drains the queue and returns (``await worker.main()``)."""
    from workers.main import build_worker

    made: list[Worker] = []

    def make(**kwargs: Any) -> Worker:
        kwargs.setdefault("burst", True)
        kwargs.setdefault("handle_signals", False)
        worker = build_worker(settings, **kwargs)
        made.append(worker)
        return worker

    return make


class LiveServer:
    """A uvicorn server on a real socket, running in a background thread."""

    def __init__(self, app: Starlette, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[Callable[..., LiveServer]]:
    """``live_server()`` serves ``create_app(settings)`` (or a given app) on a real socket."""
    servers: list[LiveServer] = []

    def start(app: Starlette | None = None) -> LiveServer:
        from app.main import create_app

        server = LiveServer(app or create_app(settings))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
