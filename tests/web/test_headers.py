"""Security headers on every answer of the routed app: errors, static files, every media type."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from app.dashboard import views
from app.main import create_app
from app.settings import Settings
from app.web.security import CSP, PLAIN_HEADERS, PLAIN_HEADERS_HTTPS, with_headers
from tests.dashboard.helpers import TOKEN

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The app over https, in process; an unexpected error is answered, not raised here."""
    app = create_app(settings, redis=redis)
    app.state.redis = redis
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://reactor.test") as c:
        yield c


def assert_guarded(resp: httpx.Response) -> None:
    assert resp.headers.get("x-frame-options") == "DENY", resp.headers
    assert resp.headers.get("x-content-type-options") == "nosniff"
    assert resp.headers.get("referrer-policy") == "strict-origin-when-cross-origin"
    assert resp.headers.get("cache-control") == "no-cache, no-store, must-revalidate"
    assert resp.headers.get("strict-transport-security", "").startswith("max-age=31536000")


async def test_an_unexpected_error_on_a_routed_path_is_a_500_with_the_headers(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "overview", broken)
    for path in ("/api/status", "/dashboard/"):
        resp = await client.get(path, headers=BEARER)
        assert resp.status_code == 500, path
        assert resp.json() == {
            "error": "internal_error",
            "detail": "unexpected error; it has been logged",
        }
        assert_guarded(resp)


async def test_static_files_are_cached_and_static_errors_are_not(
    client: httpx.AsyncClient,
) -> None:
    found = await client.get("/dashboard/static/app.js")
    assert found.status_code == 200
    assert found.headers["cache-control"] == "public, max-age=3600"
    etag = found.headers["etag"]
    unchanged = await client.get("/dashboard/static/app.js", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.headers["cache-control"] == "public, max-age=3600"
    for path in ("/dashboard/static/nope.js", "/dashboard/static/css/missing.css"):
        missing = await client.get(path)
        assert missing.status_code == 404, path
        assert_guarded(missing)
    refused = await client.post("/dashboard/static/app.js")
    assert refused.status_code == 405
    assert_guarded(refused)


def policy_of(resp: httpx.Response) -> dict[str, list[str]]:
    """The response's Content-Security-Policy, directive by directive (exactly one header)."""
    headers = resp.headers.get_list("content-security-policy")
    assert len(headers) == 1, (resp.url, headers)
    directives = (d.split() for d in headers[0].split(";") if d.strip())
    return {d[0]: d[1:] for d in directives}


async def test_pages_get_a_strict_policy_and_everything_else_loads_nothing(
    client: httpx.AsyncClient,
) -> None:
    pages = [
        await client.get("/dashboard/signin"),
        await client.get("/dashboard/", headers=BEARER),
        await client.get("/dashboard/audit", headers=BEARER),
        await client.get("/dashboard/jobs?limit=abc", headers=BEARER),  # the 400 page
        await client.get("/dashboard/jobs/ev_nope", headers=BEARER),  # the 404 page
    ]
    for page in pages:
        assert page.headers["content-type"].startswith("text/html"), page.url
        policy = policy_of(page)
        assert policy["default-src"] == ["'none'"]
        # no inline script or style, no eval: injected markup cannot run or restyle the page
        assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
        assert policy["connect-src"] == ["'self'"]  # the live stream, nowhere else
        assert policy["form-action"] == ["'self'"] and policy["base-uri"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
    others = [
        await client.get("/api/status", headers=BEARER),
        await client.get("/dashboard/live"),  # 401 without sign-in
        await client.get("/dashboard/static/app.js"),
        await client.get("/dashboard/static/app.css"),
        await client.get("/dashboard"),  # redirect
        await client.get("/no-such-page"),
        await client.get("/healthz"),
    ]
    for other in others:
        assert policy_of(other) == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}


def test_the_webhook_fast_path_sends_what_the_middleware_would() -> None:
    assert with_headers([], static=False, https=False) == PLAIN_HEADERS
    assert with_headers([], static=False, https=True) == PLAIN_HEADERS_HTTPS
    assert (CSP, b"default-src 'none'; frame-ancestors 'none'") in PLAIN_HEADERS
