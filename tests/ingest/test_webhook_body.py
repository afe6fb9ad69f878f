"""The webhook route at the ASGI level: authentication first, bounded body, raw bytes stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis
from starlette.types import Message

from app import ingest
from app.atlassian.connect_jwt import encode_connect_token
from tests.connect.conftest import ConnectApp

PATH = "/connect/webhooks/page_created"


class Call:
    """One request straight into the ASGI app; counts how much of the body the app pulled."""

    def __init__(self, headers: dict[str, str], chunks: list[bytes], method: str = "POST"):
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.chunks = chunks
        self.method = method
        self.pulled = 0
        self.status = 0
        self.body = b""

    async def receive(self) -> Message:
        if self.pulled >= len(self.chunks):
            return {"type": "http.disconnect"}
        self.pulled += 1
        more = self.pulled < len(self.chunks)
        return {"type": "http.request", "body": self.chunks[self.pulled - 1], "more_body": more}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")

    async def run(self, app: Any, path: str = PATH) -> Call:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 1),
            "server": ("reactor.test", 443),
        }
        await app(scope, self.receive, self.send)
        return self

    def error(self) -> str:
        code: str = json.loads(self.body)["error"]
        return code


def auth(client_key: str, secret: str, method: str = "POST") -> dict[str, str]:
    token = encode_connect_token(issuer=client_key, secret=secret, method=method, url=PATH)
    return {"authorization": f"JWT {token}", "content-type": "application/json"}


async def test_no_token_is_401_and_the_body_is_never_read(connect_app: ConnectApp) -> None:
    huge = [b"x" * 65536] * 64  # 4 MiB offered, far over the limit
    for headers in ({}, {"content-length": str(len(huge) * 65536)}, {"authorization": "JWT a.b.c"}):
        call = await Call(headers, huge).run(connect_app.app)
        assert call.status == 401 and call.pulled == 0, (headers, call.status, call.pulled)
        assert call.error() in ("missing_token", "malformed_token")


async def test_a_declared_oversize_body_is_413_before_reading(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    limit = connect_app.settings.max_body_bytes
    headers = {**auth(client_key, secret), "content-length": str(limit + 1)}
    call = await Call(headers, [b" " * 1024] * 4).run(connect_app.app)
    assert (call.status, call.error(), call.pulled) == (413, "payload_too_large", 0)


async def test_a_streamed_body_stops_being_read_past_the_limit(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    limit = connect_app.settings.max_body_bytes
    chunk = 64 * 1024
    chunks = [b" " * chunk] * (limit // chunk + 50)
    call = await Call(auth(client_key, secret), chunks).run(connect_app.app)
    assert (call.status, call.error()) == (413, "payload_too_large")
    assert call.pulled == limit // chunk + 1  # the first chunk past the limit, no more


async def test_wrong_media_type_and_method_after_authentication(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    text = {**auth(client_key, secret), "content-type": "text/plain"}
    call = await Call(text, [b"{}"]).run(connect_app.app)
    assert (call.status, call.error(), call.pulled) == (415, "unsupported_media_type", 0)
    get = await Call(auth(client_key, secret, "GET"), [b""], method="GET").run(connect_app.app)
    assert (get.status, get.error()) == (405, "method_not_allowed")


async def test_the_payload_is_stored_byte_for_byte_with_one_log_line(
    connect_app: ConnectApp, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured = structlog.testing.CapturingLogger()
    monkeypatch.setattr(ingest, "log", captured)
    client_key, secret = await connect_app.install()
    raw = (
        b'{ "timestamp": 1788716539192,\n  "page": {"version": 3, "id": 4242,'
        b' "title": "caf\\u00e9", "spaceKey": "ENG", "contentType": "page",'
        b' "big": 123456789012345678901234567890},'
        b' "userAccountId": "712020:x"}'
    )
    chunks = [raw[:17], raw[17:60], raw[60:]]  # split across receive() calls
    call = await Call(auth(client_key, secret), chunks).run(connect_app.app)
    assert call.status == 204, call.body
    assert [(c.method_name, c.args) for c in captured.calls] == [("info", ("event stored",))]
    event_id = captured.calls[0].kwargs["event_id"]
    assert captured.calls[0].kwargs["tenant"] == client_key
    stored = await redis.hget(  # type: ignore[misc]
        f"{connect_app.settings.redis_prefix}event:{event_id}", "event"
    )
    assert stored is not None
    assert stored.startswith(b'{"id":"' + event_id.encode() + b'","source":"connect"')
    assert stored.endswith(b',"raw":' + raw + b"}")
    decoded = json.loads(stored)
    assert decoded["raw"]["page"]["big"] == 123456789012345678901234567890  # not rounded
    assert (decoded["content_id"], decoded["version"], decoded["title"]) == ("4242", 3, "café")
    event = await connect_app.app.state.queue.get(event_id)
    assert event is not None and event.raw == json.loads(raw)
