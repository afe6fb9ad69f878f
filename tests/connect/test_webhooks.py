"""Webhooks end to end through the app: verified, normalised, stored, acknowledged."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from app import redis as redis_conn
from app.atlassian.connect_jwt import encode_connect_token
from app.atlassian.events import CONNECT_EVENTS, event_id
from app.embedded_redis import free_port
from app.logs import redact
from app.queue import EventQueue
from app.web import connect_auth

from .conftest import FIXTURES_DIR, ConnectApp


def page_created() -> dict[str, object]:
    data: dict[str, object] = json.loads((FIXTURES_DIR / "page_created.json").read_text())
    return data


async def test_signed_webhook_reaches_the_queue(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created?lic=none"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    resp = await connect_app.client.post(
        path, json=page_created(), headers={"Authorization": f"JWT {token}"}
    )
    assert resp.status_code == 204, resp.text
    body = page_created()
    page = body["page"]
    assert isinstance(page, dict)
    expected_id = event_id(client_key, "page.created", "13139970", 1, int(str(body["timestamp"])))
    event = await connect_app.app.state.queue.get(expected_id)
    assert event is not None
    assert event.tenant == client_key
    assert event.type == "page.created"
    assert event.content_id == "13139970"


async def post_signed(
    app: ConnectApp, path: str, token: str, body: object | None = None, **kw: object
) -> httpx.Response:
    return await app.client.post(
        path,
        json=page_created() if body is None else body,
        headers={"Authorization": f"JWT {token}"},
        **kw,  # type: ignore[arg-type]
    )


async def test_token_in_the_query_string_is_accepted(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created?user_id=admin"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    resp = await connect_app.client.post(f"{path}&jwt={token}", json=page_created())
    assert resp.status_code == 204


@pytest.mark.parametrize("event", list(CONNECT_EVENTS))
async def test_every_subscribed_event_has_its_url(connect_app: ConnectApp, event: str) -> None:
    client_key, secret = await connect_app.install()
    path = f"/connect/webhooks/{event}"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    content = {"id": 77, "idAsString": "77", "version": 3, "contentType": "page"}
    body = {"page": content, "blog": content, "comment": content, "timestamp": 5}
    body["attachments"] = [content]
    body["label"] = {"name": "x"}
    resp = await post_signed(connect_app, path, token, body)
    assert resp.status_code == 204, resp.text


async def test_unknown_event_after_authentication_is_404(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/space_created"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    assert (await post_signed(connect_app, path, token)).status_code == 404


@pytest.mark.parametrize(
    "path", ["/connect/webhooks/page_updated/", "/connect/webhooks/page_updated/extra"]
)
async def test_paths_below_a_webhook_authenticate_first_and_never_redirect(
    connect_app: ConnectApp, path: str
) -> None:
    unsigned = await connect_app.client.post(path, json=page_created())
    assert unsigned.status_code == 401  # not a 307 to the path without the slash
    client_key, secret = await connect_app.install()
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    signed = await post_signed(connect_app, path, token)
    assert signed.status_code == 404 and signed.json()["error"] == "unknown_event"


def versioned(version: object) -> bytes:
    return json.dumps({"page": {"id": 1, "version": version}}).encode()


async def test_bad_bodies(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    headers = {"Authorization": f"JWT {token}"}
    big = b'{"x": "' + b"a" * (connect_app.settings.max_body_bytes + 1) + b'"}'
    cases = [
        (big, "application/json", 413, "payload_too_large"),
        (b"page=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"{nope", "application/json", 400, "invalid_payload"),
        (b"[1]", "application/json", 400, "invalid_payload"),
        (b'{"page": {}}', "application/json", 400, "invalid_payload"),
        (b'{"page": {"id": "12; DROP"}}', "application/json", 400, "invalid_payload"),
        # versions int() refuses ("²") or would take long to read: refused, never a 500
        (versioned("\u00b2"), "application/json", 400, "invalid_payload"),
        (versioned({"number": "9" * 5000}), "application/json", 400, "invalid_payload"),
    ]
    for content, media, status, code in cases:
        resp = await connect_app.client.post(
            path, content=content, headers={**headers, "content-type": media}
        )
        assert (resp.status_code, resp.json()["error"]) == (status, code), content[:60]
        if content.startswith(b'{"page": {"id": "12'):
            assert "'12; DROP' is not a Confluence content id" in resp.json()["detail"]


async def test_queue_unavailable_is_503_and_nothing_acknowledged(
    connect_app: ConnectApp,
) -> None:
    client_key, secret = await connect_app.install()
    dead = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0")
    connect_app.app.state.queue = EventQueue(dead, connect_app.settings)
    path = "/connect/webhooks/page_created"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    resp = await post_signed(connect_app, path, token)
    await dead.aclose()
    assert (resp.status_code, resp.json()["error"]) == (503, "queue_unavailable")


async def test_tenant_a_token_never_makes_a_tenant_b_event(connect_app: ConnectApp) -> None:
    key_a, secret_a = await connect_app.install()
    key_b, _ = await connect_app.install()
    path = "/connect/webhooks/page_created"
    as_b_with_a_secret = encode_connect_token(
        issuer=key_b, secret=secret_a, method="POST", url=path
    )
    resp = await post_signed(connect_app, path, as_b_with_a_secret)
    assert (resp.status_code, resp.json()["error"]) == (401, "bad_signature")
    token_a = encode_connect_token(issuer=key_a, secret=secret_a, method="POST", url=path)
    assert (await post_signed(connect_app, path, token_a)).status_code == 204
    body = page_created()
    ts = int(str(body["timestamp"]))
    queue = connect_app.app.state.queue
    assert await queue.get(event_id(key_a, "page.created", "13139970", 1, ts)) is not None
    assert await queue.get(event_id(key_b, "page.created", "13139970", 1, ts)) is None


async def test_rejections_are_logged_with_reason_never_the_token(
    connect_app: ConnectApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The line as the JSON format renders it, into a buffer of this test's own: the process's
    # logging may have been configured (and its loggers cached) by an earlier test.
    out = io.StringIO()
    processors = [structlog.processors.add_log_level, redact, structlog.processors.JSONRenderer()]
    line = structlog.wrap_logger(structlog.PrintLogger(out), processors=processors)
    monkeypatch.setattr(connect_auth, "log", line)
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created"
    token = encode_connect_token(issuer=client_key, secret=secret, method="GET", url=path)
    resp = await post_signed(connect_app, path, token)
    assert resp.json() == {
        "error": "qsh_mismatch",
        "detail": "qsh does not match this request's method, path and query",
    }
    text = out.getvalue()
    assert "connect.rejected" in text and "qsh_mismatch" in text and client_key in text
    assert token not in text and secret not in text
    assert token not in resp.text and secret not in resp.text


async def test_a_refusal_s_log_line_keeps_unverified_claims_short(
    connect_app: ConnectApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token's issuer is unverified when its tenant is unknown: one line per refused request
    must not carry kilobytes of it (a flood of them fills disks and the log pipe)."""
    out = io.StringIO()
    processors = [structlog.processors.add_log_level, redact, structlog.processors.JSONRenderer()]
    line = structlog.wrap_logger(structlog.PrintLogger(out), processors=processors)
    monkeypatch.setattr(connect_auth, "log", line)
    await connect_app.install()
    path = "/connect/webhooks/page_created"
    issuer = "x" * 5000
    token = encode_connect_token(issuer=issuer, secret="s" * 32, method="POST", url=path)
    resp = await post_signed(connect_app, path, token)
    assert resp.status_code == 401
    [logged] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert logged["reason"] == resp.json()["error"]
    assert logged["client_key"] == "x" * 200 + "… (5000 characters)"
    assert len(out.getvalue()) < 600


async def test_oversized_token_over_http(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created"
    token = encode_connect_token(
        issuer=client_key, secret=secret, method="POST", url=path, subject="u" * 9000
    )
    resp = await post_signed(connect_app, path, token)
    assert (resp.status_code, resp.json()["error"]) == (401, "token_too_large")


JUNK_TARGETS = [
    "/connect/webhooks/page_created",
    "/connect/webhooks/x",
    "/connect/webhooks/%2e%2e",
    "/connect/installed",
    "/connect/uninstalled",
    "/connect/enabled",
    "/connect/disabled",
]
JUNK = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=JUNK, query=JUNK, path=st.sampled_from(JUNK_TARGETS))
async def test_junk_credentials_never_cause_a_server_error(
    connect_app: ConnectApp, header: str, query: str, path: str
) -> None:
    resp = await connect_app.client.post(
        path,
        params={"jwt": query},
        headers={"Authorization": header} if header.strip() else {},
        json=page_created(),
    )
    assert resp.status_code in (400, 401, 404), resp.text
    assert set(resp.json()) == {"error", "detail"}


async def test_webhooks_answer_as_the_routed_endpoint_would(connect_app: ConnectApp) -> None:
    """The app serves webhook paths past its middleware and router: same answers as through them."""
    client_key, secret = await connect_app.install()
    app = connect_app.app

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        await Starlette.__call__(app, scope, receive, send)

    transport = httpx.ASGITransport(app=routed)
    base = connect_app.settings.base_url
    path = "/connect/webhooks/page_created"
    signed = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    as_get = encode_connect_token(issuer=client_key, secret=secret, method="GET", url=path)
    unknown = "/connect/webhooks/page_moved_to_mars"
    signed_unknown = encode_connect_token(
        issuer=client_key, secret=secret, method="POST", url=unknown
    )
    big = b"{" + b" " * (connect_app.settings.max_body_bytes + 1) + b"}"
    auth = {"Authorization": f"JWT {signed}"}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", path, {"headers": auth, "json": page_created()}),
        ("POST", path, {"headers": auth, "json": page_created()}),  # duplicate
        ("POST", path, {"json": page_created()}),
        ("GET", path, {"headers": {"Authorization": f"JWT {as_get}"}}),
        ("POST", unknown, {"headers": {"Authorization": f"JWT {signed_unknown}"}, "json": {}}),
        ("POST", path, {"headers": {**auth, "Content-Type": "text/plain"}, "content": b"{}"}),
        ("POST", path, {"headers": {**auth, "Content-Type": "application/json"}, "content": big}),
        ("POST", path, {"headers": {**auth, "Content-Type": "application/json"}, "content": b"{"}),
        ("POST", path, {"headers": auth, "json": [1, 2]}),
    ]
    statuses = []
    async with httpx.AsyncClient(transport=transport, base_url=base) as through_router:
        for method, url, kw in cases:
            direct = await connect_app.client.request(method, url, **kw)
            reference = await through_router.request(method, url, **kw)
            assert direct.status_code == reference.status_code, (url, kw.keys(), direct.text)
            assert direct.content == reference.content
            assert sorted(direct.headers.multi_items()) == sorted(reference.headers.multi_items())
            statuses.append(direct.status_code)
    assert statuses == [204, 204, 401, 405, 404, 415, 413, 400, 400]


async def test_an_unexpected_error_is_a_500_and_reaches_the_server(
    connect_app: ConnectApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)

    async def broken(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(connect_app.app.state.queue, "put", broken)
    transport = httpx.ASGITransport(app=connect_app.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=connect_app.settings.base_url) as c:
        resp = await post_signed(
            ConnectApp(connect_app.app, c, connect_app.settings, connect_app.install_key),
            path,
            token,
        )
    assert resp.status_code == 500
    assert resp.json() == {
        "error": "internal_error",
        "detail": "unexpected error; it has been logged",
    }
    assert resp.headers["x-content-type-options"] == "nosniff"
    with pytest.raises(RuntimeError, match="a bug"):
        await post_signed(connect_app, path, token)


async def test_the_route_serves_webhooks_under_a_root_path(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/reactor/connect/webhooks/page_created"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    transport = httpx.ASGITransport(app=connect_app.app, root_path="/reactor")
    async with httpx.AsyncClient(transport=transport, base_url=connect_app.settings.base_url) as c:
        ok = await c.post(path, json=page_created(), headers={"Authorization": f"JWT {token}"})
        refused = await c.post(path, json=page_created())
    assert ok.status_code == 204, ok.text
    assert ok.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    assert (refused.status_code, refused.json()["error"]) == (401, "missing_token")
