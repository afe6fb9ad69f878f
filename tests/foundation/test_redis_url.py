"""Every process builds the same Redis connection from REACTOR_REDIS_URL, TLS options included.

The worker connects through arq (:func:`app.redis.arq_settings`), the web process and the CLI
through redis-py (:func:`app.redis.connect`). A ``rediss://`` URL naming its CA with
``?ssl_ca_certs=`` must work in both, here through a TLS front (the embedded server speaks no
TLS) whose self-signed certificate only that CA file trusts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from arq.connections import create_pool
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app import redis as redis_conn
from app.dashboard.heartbeat import Heartbeats
from app.devcert import dev_certificate
from app.errors import ConfigError
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TLS_URL = (
    "rediss://:pw@redis.example.com:6380/3?ssl_ca_certs=/etc/ssl/ca.pem"
    "&ssl_certfile=/etc/ssl/client.pem&ssl_keyfile=/etc/ssl/client.key"
    "&ssl_cert_reqs=required&ssl_check_hostname=true&socket_connect_timeout=5"
    "&max_connections=40&retry_on_timeout=true"
)


def test_the_worker_s_connection_carries_every_option_of_the_url() -> None:
    settings = redis_conn.arq_settings(TLS_URL)
    assert (settings.host, settings.port, settings.database) == ("redis.example.com", 6380, 3)
    assert settings.password == "pw" and settings.ssl is True
    assert settings.ssl_ca_certs == "/etc/ssl/ca.pem"
    assert settings.ssl_certfile == "/etc/ssl/client.pem"
    assert settings.ssl_keyfile == "/etc/ssl/client.key"
    assert settings.ssl_cert_reqs == "required"
    assert settings.ssl_check_hostname is True
    assert settings.conn_timeout == 5
    assert settings.max_connections == 40 and settings.retry_on_timeout is True


def test_the_worker_and_the_web_process_connect_alike_without_options() -> None:
    settings = redis_conn.arq_settings("rediss://h:6380/2")
    assert settings.ssl is True and settings.database == 2
    assert settings.conn_timeout == redis_conn.CONNECT_TIMEOUT_SECONDS
    assert not settings.ssl_check_hostname  # what connect() passes for rediss:// too
    unix = redis_conn.arq_settings("unix:///run/redis.sock?db=4")
    assert unix.unix_socket_path == "/run/redis.sock" and unix.database == 4
    assert redis_conn.arq_settings("redis://:p%40ss@h/1").password == "p@ss"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rediss://h:6380/0?socket_timeout=3", "option socket_timeout is not supported"),
        ("redis://h:6379/0?ssl_ca_certs=/ca.pem", "ssl_ca_certs needs a rediss:// URL"),
        ("rediss://h:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("redis+sentinel://s:26379/m/0?ssl_ca_certs=/x", "takes no option but db"),
    ],
)
def test_an_option_one_process_would_drop_is_refused_by_all(url: str, message: str) -> None:
    for build in (redis_conn.arq_settings, redis_conn.connect):
        with pytest.raises(ConfigError) as info:
            build(url)
        assert message in str(info.value)
        assert info.value.problems[0].startswith("REACTOR_REDIS_URL: ")


class TlsFront:
    """A TLS-terminating TCP proxy in front of a plain Redis, on its own thread and loop."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def tls_redis(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(``rediss://`` URL of the test's database through a TLS front, the CA file)."""
    plain = urlsplit(redis_url)
    assert plain.port is not None
    cert, key = dev_certificate(tmp_path)
    front = TlsFront(plain.port, cert, key)
    front.start()
    try:
        yield f"rediss://127.0.0.1:{front.port}{plain.path}", cert
    finally:
        front.stop()


async def test_the_worker_connects_through_tls_with_the_ca_the_url_names(
    tls_redis: tuple[str, Path],
) -> None:
    url, ca = tls_redis
    trusted = f"{url}?ssl_ca_certs={ca}&ssl_check_hostname=true"
    settings = redis_conn.arq_settings(trusted)
    settings.conn_retries = 0
    pool = await create_pool(settings)
    try:
        assert await pool.ping()
    finally:
        await pool.aclose()
    client = redis_conn.connect(trusted)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    # Without the CA the self-signed certificate is refused: the option is what made it work.
    untrusted = redis_conn.arq_settings(url)
    untrusted.conn_retries = 0
    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await create_pool(untrusted)


@pytest.mark.parametrize("command", ["web", "worker"])
def test_web_and_worker_refuse_such_a_url_in_one_line(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "REACTOR_REDIS_URL": "rediss://:hidden-pw@127.0.0.1:1/0?socket_timeout=3",
        "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "REACTOR_DASHBOARD_TOKEN": "an-operator-token-long-enough",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("reactor: REACTOR_REDIS_URL: option socket_timeout")
    assert len(result.stderr.splitlines()) == 1 and "hidden-pw" not in result.stderr


def test_a_worker_that_cannot_trust_the_certificate_ends_in_one_line(
    tls_redis: tuple[str, Path],
) -> None:
    """No retry mends an untrusted certificate: one line naming the fix, exit 2."""
    url, _ = tls_redis
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {"REACTOR_REDIS_URL": url, "REACTOR_RECONCILE_INTERVAL_SECONDS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"reactor: REACTOR_REDIS_URL: {url}: the server's TLS certificate")
    assert "CERTIFICATE_VERIFY_FAILED" in line and line.endswith("?ssl_ca_certs=/path/ca.pem")


async def test_the_worker_health_check_connects_as_the_worker_does(
    tls_redis: tuple[str, Path], settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    url, ca = tls_redis
    await Heartbeats(redis, settings.redis_prefix).beat(
        "this-host-1-abc", {"host": socket.gethostname(), "pid": 1}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": f"{url}?ssl_ca_certs={ca}",
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: worker this-host-1-abc beating"
