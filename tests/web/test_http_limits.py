"""What one client can make ``reactor web`` hold: head size, URL size, read times, connections.

Real sockets against uvicorn configured as ``reactor web`` configures it (its protocol, its
limits from the settings), serving the app; timeouts shortened through the settings.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from redis.asyncio import Redis

from app.atlassian.connect_jwt import encode_connect_token
from app.embedded_redis import free_port
from app.main import create_app
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from app.web_server import uvicorn_config

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 16
PATH = "/connect/webhooks/page_updated"
PAGE = json.loads(
    (
        Path(__file__).parents[1] / "fixtures" / "events" / "connect" / "page_updated.json"
    ).read_text()
)
# Longer than any limit or timeout here: a server without the bound never answers in time.
PATIENCE = 6.0


class WebServer:
    """The app under uvicorn on a real socket, in a thread, configured as ``reactor web``."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn_config(
            settings,
            host="127.0.0.1",
            port=self.port,
            forwarded_allow_ips="127.0.0.1",
            app=create_app(settings),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("web server did not start")
            time.sleep(0.01)

    def connect(self) -> Client:
        return Client(self.port)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "web_header_timeout_seconds": HEAD_TIMEOUT,
            "web_body_timeout_seconds": BODY_TIMEOUT,
            "web_max_connections": MAX_CONNECTIONS,
        }
    )


@pytest.fixture
def web(limited: Settings) -> Iterator[WebServer]:
    server = WebServer(limited)
    try:
        yield server
    finally:
        server.stop()


class Client:
    """A blocking socket to the server, as a client would hold one."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        self.received = b""

    def send(self, data: bytes) -> bool:
        """False once the server no longer takes what is sent (it closed the connection)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def answered(self, wait: float = 0.0) -> bool:
        """Whether the server sent something (or closed) within ``wait`` seconds."""
        return bool(select.select([self.sock], [], [], wait)[0])

    def stream(self, data: bytes, pause: float, most: int) -> int:
        """Send ``data`` every ``pause`` seconds until answered, refused, or ``most`` times;
        how many times it was sent."""
        for sent in range(most):
            if self.answered(pause) or not self.send(data):
                return sent
        return most

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(1 << 16)
        except ConnectionResetError:
            return b""

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """One response: status, headers (lower-case names), body (by its content-length)."""
        while b"\r\n\r\n" not in self.received:
            chunk = self._recv()
            assert chunk, f"closed without an answer after {self.received!r}"
            self.received += chunk
        head, self.received = self.received.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines)
        length = int(headers.get("content-length", "0"))
        while len(self.received) < length:
            chunk = self._recv()
            assert chunk, "closed within an answer"
            self.received += chunk
        body, self.received = self.received[:length], self.received[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """True once the server closed the connection (a reset too); False if it stays open."""
        try:
            while chunk := self.sock.recv(1 << 16):
                self.received += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


def healthz(web: WebServer) -> int:
    client = web.connect()
    client.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\nConnection: close\r\n\r\n")
    status, _, _ = client.answer()
    client.close()
    return status


def webhook(client_key: str, secret: str, version: int) -> bytes:
    """A signed Connect ``page_updated`` request, its own event (page version ``version``)."""
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=PATH)
    body = json.dumps({**PAGE, "page": {**PAGE["page"], "version": version}}).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: reactor.test\r\nAuthorization: JWT {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.fixture
async def tenant(limited: Settings, redis: Redis) -> tuple[str, str]:
    client_key, secret = f"ck-{uuid.uuid4()}", uuid.uuid4().hex * 2
    now = time.time()
    site = Tenant(
        client_key=client_key,
        shared_secret=secret,
        base_url="https://limits.atlassian.net/wiki",
        installed_at=now,
        updated_at=now,
    )
    await TenantStore(redis, limited).upsert(site)
    return client_key, secret


async def stored_events(redis: Redis, settings: Settings) -> int:
    return len([k async for k in redis.scan_iter(match=f"{settings.redis_prefix}event:*")])


def test_headers_over_the_limit_are_431_and_the_connection_closed(web: WebServer) -> None:
    # Many headers, sent whole: counted as they are parsed.
    client = web.connect()
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))
    client.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\n" + many + b"\r\n")
    status, headers, body = client.answer()
    assert (status, body) == (431, b"Request Header Fields Too Large")
    assert headers["connection"] == "close"
    assert client.closed()

    # One header line that never ends: refused while it is still arriving.
    client = web.connect()
    client.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\nX-Endless: ")
    assert client.stream(b"a" * 8192, pause=0.01, most=128) < 32  # not 1 MiB: at 72 KiB
    assert client.answer()[0] == 431
    assert client.closed()

    # Many small headers cost memory too: each counts 128 bytes besides its name and value.
    client = web.connect()
    tiny = b"".join(b"x%d:\r\n" % i for i in range(600))
    client.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\n" + tiny + b"\r\n")
    assert client.answer()[0] == 431

    # What real clients send is far below: a 32 KiB cookie passes.
    client = web.connect()
    cookie = b"Cookie: c=" + b"v" * (32 * 1024) + b"\r\n"
    client.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\n" + cookie + b"\r\n")
    assert client.answer()[0] == 200
    client.close()


def test_a_url_over_the_limit_is_414_and_a_token_in_the_query_passes(web: WebServer) -> None:
    client = web.connect()
    url = b"/healthz?q=" + b"a" * (9 * 1024)
    client.send(b"GET " + url + b" HTTP/1.1\r\nHost: reactor.test\r\n\r\n")
    status, _, body = client.answer()
    assert (status, body) == (414, b"URI Too Long")
    assert client.closed()

    # Sent in pieces, without end: refused once past the limit, not kept any further.
    client = web.connect()
    client.send(b"GET /healthz?q=")
    assert client.stream(b"a" * 1024, pause=0.01, most=1024) < 16
    assert client.answer()[0] == 414
    assert client.closed()

    # A Connect token in the query string (?jwt=, a few KiB at most) is far below the limit.
    client = web.connect()
    client.send(b"GET /healthz?jwt=" + b"a" * 6000 + b" HTTP/1.1\r\nHost: reactor.test\r\n\r\n")
    assert client.answer()[0] == 200
    client.close()


def test_a_stalled_head_or_a_silent_connection_is_closed_after_the_header_timeout(
    web: WebServer,
) -> None:
    started = time.monotonic()
    silent = web.connect()
    stalled = web.connect()
    stalled.send(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: reactor.test\r\n")
    trickle = web.connect()
    trickle.send(b"GET /healthz HTTP/1.1\r\n")
    # A header line every 0.2 s does not keep it open.
    trickle.stream(b"X-Slow: b\r\n", pause=0.2, most=int(PATIENCE / 0.2))
    assert HEAD_TIMEOUT * 0.9 <= time.monotonic() - started < HEAD_TIMEOUT + 1
    assert trickle.answer()[0] == 408
    status, headers, body = stalled.answer()
    assert (status, headers["connection"], body) == (408, "close", b"Request Timeout")
    assert stalled.closed()
    # Nothing of a request came: closed without an answer.
    assert silent.closed() and silent.received == b""
    assert healthz(web) == 200


async def test_a_body_trickled_beyond_the_body_timeout_is_closed_and_nothing_is_stored(
    web: WebServer, tenant: tuple[str, str], redis: Redis, limited: Settings
) -> None:
    request = webhook(*tenant, version=7)
    head_end = request.index(b"\r\n\r\n") + 4
    client = web.connect()
    client.send(request[: head_end + 10])
    started = time.monotonic()
    # One byte of the body every 0.2 s: it would take over a minute.
    assert client.stream(b"{", pause=0.2, most=int(PATIENCE / 0.2)) < PATIENCE / 0.2
    assert BODY_TIMEOUT * 0.9 <= time.monotonic() - started < BODY_TIMEOUT + 1
    status, headers, _ = client.answer()
    assert (status, headers["connection"]) == (408, "close")
    assert client.closed()
    time.sleep(0.2)
    assert await stored_events(redis, limited) == 0


async def test_webhooks_on_one_kept_alive_connection_each_get_the_full_timeouts(
    web: WebServer, tenant: tuple[str, str], redis: Redis, limited: Settings
) -> None:
    """Timeouts count per request: requests spread over more than one timeout all pass, even
    one sent in pieces; a stalled head on that same connection is still closed."""
    client = web.connect()
    for version in range(1, 4):
        time.sleep(HEAD_TIMEOUT * 0.6)
        request = webhook(*tenant, version=version)
        if version == 2:  # the head in two pieces, then the body in two
            head_end = request.index(b"\r\n\r\n") + 4
            pieces = [request[:40], request[40:head_end], request[head_end:-20], request[-20:]]
            for piece in pieces:
                assert client.send(piece)
                time.sleep(HEAD_TIMEOUT * 0.6 / len(pieces))
        else:
            assert client.send(request)
        status, headers, _ = client.answer()
        assert status == 204, version
        assert "connection" not in headers
    assert await stored_events(redis, limited) == 3

    client.send(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: reactor.test\r\n")
    assert client.answer()[0] == 408
    assert client.closed()


def test_idle_connections_close_after_the_header_timeout_and_after_an_answer_at_keep_alive(
    web: WebServer,
) -> None:
    before = web.connect()
    after = web.connect()
    after.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\n\r\n")
    assert after.answer()[0] == 200
    answered = time.monotonic()
    # No request yet: the header timeout, without an answer.
    assert before.closed() and before.received == b""
    assert time.monotonic() - answered < HEAD_TIMEOUT + 1
    # After an answer, uvicorn's keep-alive timeout (5 s) closes it, without an answer.
    after.sock.settimeout(PATIENCE + 2)
    assert after.closed() and after.received == b""
    assert 4.5 < time.monotonic() - answered < 7


def test_connections_beyond_the_cap_are_refused_and_served_again_once_it_clears(
    web: WebServer,
) -> None:
    held = [web.connect() for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.1)
    started = time.monotonic()
    extra = web.connect()
    extra.send(b"GET /healthz HTTP/1.1\r\nHost: reactor.test\r\n\r\n")
    assert extra.closed()
    assert time.monotonic() - started < HEAD_TIMEOUT / 2  # at once, not at a timeout
    # 503 when it could be read before the close (a client sending early may see a reset).
    assert extra.received == b"" or extra.received.startswith(b"HTTP/1.1 503 ")
    for client in held:
        client.close()
    time.sleep(0.2)
    assert healthz(web) == 200
