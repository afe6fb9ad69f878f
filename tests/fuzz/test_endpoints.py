"""Generated requests against every public route of the web app, driven in-process.

The app runs with its real lifespan (Redis, tenant store, key clients) on an event loop of its
own; httpx's ASGI transport sends each request straight to it, so thousands of requests take
seconds. Requests mix valid and hostile parts: methods, paths with odd parameters and query
strings, media types, Connect tokens correctly signed with the tenant's secret but carrying
hostile claims, Forge tokens signed by a key the JWKS host publishes, operator tokens and
cookies, and bodies that are random bytes, random JSON or mutated real payloads.

For every request: no 5xx, an answer within 5 s, no exception out of the app, and no secret
(shared secret, operator token, encryption key, Forge system token) in the body or headers.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import redis as redis_conn
from app.atlassian.connect_jwt import encode_connect_token
from app.main import create_app
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.conftest import RedisTarget
from tests.forge.conftest import APP_ID, JwksHost, SigningKey, fit_claims, mint
from tests.fuzz.strategies import JSON, OBJECT, PAYLOADS, TOKEN_TEXT, hs256_token, mutate

CLIENT_KEY = "fuzz-tenant"
SHARED_SECRET = "fuzz-shared-secret-" + uuid.uuid4().hex
OPERATOR = "fuzz-operator-" + uuid.uuid4().hex
SYSTEM_TOKEN = "fuzz-system-token-" + uuid.uuid4().hex
BASE = "https://reactor.test"
EXAMPLES = int(os.environ.get("REACTOR_FUZZ_EXAMPLES", "170"))  # x len(PATHS) requests

PATHS = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/atlassian-connect.json",
    "/connect/installed",
    "/connect/uninstalled",
    "/connect/enabled",
    "/connect/disabled",
    "/connect/webhooks/page_updated",
    "/connect/webhooks/comment_created",
    "/connect/webhooks/{x}",
    "/forge/events",
    "/forge/lifecycle",
    "/forge/token-refresh",
    "/forge/pre-uninstall",
    "/dashboard",
    "/dashboard/",
    "/dashboard/signin",
    "/dashboard/signout",
    "/dashboard/jobs",
    "/dashboard/jobs/{x}",
    "/dashboard/budget",
    "/dashboard/tenants",
    "/dashboard/workers",
    "/dashboard/reactions",
    "/dashboard/audit",
    "/dashboard/dead",
    "/api/status",
    "/api/jobs",
    "/api/jobs/{x}",
    "/api/dead",
    "/api/dead/retry",
    "/api/dead/discard",
    "/api/budget",
    "/api/tenants",
    "/api/workers",
    "/api/reactions",
    "/api/audit",
    "/{x}",
]


class Runner:
    """The app and its lifespan on a private event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._start(), 20)

    def call(self, coro: Any, timeout: float) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _start(self) -> None:
        redis = redis_conn.connect(str(self.settings.redis_url))
        now = time.time()
        await TenantStore(redis, self.settings).upsert(
            Tenant(CLIENT_KEY, SHARED_SECRET, "https://fuzz.atlassian.net/wiki", installed_at=now)
        )
        await redis.aclose()
        self.app = create_app(self.settings)
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    async def _stop(self) -> None:
        await self.client.aclose()
        await self.lifespan.__aexit__(None, None, None)

    def stop(self) -> None:
        self.call(self._stop(), 20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def forge_key() -> SigningKey:
    return SigningKey()


@pytest.fixture(scope="module")
def runner(
    redis_target: RedisTarget, forge_key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runner]:
    host = JwksHost()
    host.keys = [forge_key]
    host.server.start()
    url = redis_target.url
    if redis_target.owned is not None:
        url = f"redis://127.0.0.1:{redis_target.owned.port}/63"
    settings = Settings(
        redis_url=url,
        redis_prefix=f"fuzz{uuid.uuid4().hex[:8]}:",
        secret_key=Fernet.generate_key().decode(),
        dashboard_token=OPERATOR,
        base_url=BASE,
        forge_app_id=APP_ID,
        forge_jwks_url=host.url,
        connect_install_keys_url=host.url.rsplit("/", 1)[0],
        state_dir=tmp_path_factory.mktemp("fuzz"),
        max_body_bytes=MAX_BODY,
        log_level="error",
        _env_file=None,
    )
    runner = Runner(settings)
    yield runner
    runner.stop()
    host.server.stop()


SEGMENT = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="/?#"), max_size=12),
    st.sampled_from(["..", "%2e%2e", "ev_" + "0" * 32, "%00", "a" * 300]),
)
QUERY = st.one_of(
    st.just(""), st.text(max_size=20).map(lambda q: "?" + q), st.just("?jwt=abc&x=1&x=2")
)


@st.composite
def authorization(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none", "text", "jwt", "signed", "forge", "bearer", "operator"]))
    if kind == "none":
        return None
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "jwt":
        return "JWT " + draw(TOKEN_TEXT)
    if kind == "signed":
        if draw(st.booleans()):
            return SIGN_FOR_PATH  # a valid Connect token for whichever path it is sent to
        return "JWT " + draw(hs256_token(SHARED_SECRET))
    if kind == "forge":
        overrides = st.dictionaries(
            st.sampled_from(["aud", "iss", "exp", "app", "context", "principal"]),
            OBJECT | JSON,
            max_size=2,
        )
        try:
            claims: dict[str, Any] = {**fit_claims(), **draw(overrides)}
            return "Bearer " + mint(FORGE_KEY[0], claims)
        except Exception:
            return "Bearer " + draw(TOKEN_TEXT)
    if kind == "bearer":
        return "Bearer " + draw(TOKEN_TEXT)
    return "Bearer " + OPERATOR


FORGE_KEY: list[SigningKey] = []
SIGN_FOR_PATH = "<sign for the path>"
MAX_BODY = 16_384
SAFE = "%.:@!$&'()*+,;=-_~"


@st.composite
def request(draw: st.DrawFn) -> dict[str, Any]:
    body_kind = draw(st.sampled_from(["none", "bytes", "json", "payload", "payload", "huge"]))
    body: bytes | None = None
    if body_kind == "huge":
        body = b'{"page": "' + b"x" * MAX_BODY + b'"}'
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif body_kind == "json":
        body = json.dumps(draw(JSON)).encode()
    elif body_kind == "payload":
        body = json.dumps(mutate(draw(st.sampled_from(PAYLOADS)), draw)).encode()
    headers = {}
    auth = draw(authorization())
    if auth is not None:
        headers["authorization"] = auth
    content_type = draw(
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "",
                "application/x-www-form-urlencoded",
                "application/json; charset=latin-1",
                "application/vnd+json",
            ]
        )
    )
    if content_type:
        headers["content-type"] = content_type
    extra = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "x-csrf-token",
                    "cookie",
                    "x-forge-oauth-system",
                    "content-length",
                    "accept",
                    "x-forwarded-for",
                ]
            ),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
            max_size=2,
        )
    )
    if "content-length" in extra:
        extra.pop("content-length")
    if draw(st.booleans()) and "cookie" not in extra:
        extra["x-forge-oauth-system"] = SYSTEM_TOKEN
    headers.update(extra)
    method = draw(
        st.sampled_from(
            ["GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
        )
    )
    query = draw(QUERY)
    if draw(st.integers(0, 2)) == 0:  # coherent: a signed JSON POST of a (mutated) real payload
        method, query = "POST", ""
        headers.update({"content-type": "application/json", "authorization": SIGN_FOR_PATH})
        payload = draw(st.sampled_from(PAYLOADS))
        body = json.dumps(mutate(payload, draw) if draw(st.booleans()) else payload).encode()
        if draw(st.integers(0, 9)) == 0:
            body = b'{"page": "' + b"x" * MAX_BODY + b'"}'  # over REACTOR_MAX_BODY_BYTES
        if draw(st.integers(0, 7)) == 0:
            headers["content-type"] = draw(st.sampled_from(["text/plain", "application/xml"]))
    return {
        "method": method,
        "segment": draw(SEGMENT),
        "query": query,
        "headers": headers,
        "content": body,
    }


def for_path(shape: dict[str, Any], template: str) -> dict[str, Any]:
    """The generated request shape sent to one route (a valid token is signed for it)."""
    path = template.replace("{x}", quote(shape["segment"], safe=SAFE) or "x")
    headers = dict(shape["headers"])
    if headers.get("authorization") == SIGN_FOR_PATH:
        headers["authorization"] = "JWT " + encode_connect_token(
            issuer=CLIENT_KEY,
            secret=SHARED_SECRET,
            method=shape["method"],
            url=BASE + path,
            base_url=BASE,
        )
    return {
        "method": shape["method"],
        "url": path + quote(shape["query"], safe=SAFE + "?/"),
        # raw UTF-8 bytes on the wire, as a hostile client may send
        "headers": {k: v.encode() for k, v in headers.items()},
        "content": shape["content"],
    }


SECRETS = [SHARED_SECRET, OPERATOR, SYSTEM_TOKEN]
COUNT = {"requests": 0}
STATUSES: Counter[int] = Counter()


async def send_all(
    runner: Runner, batch: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], httpx.Response]]:
    async def one(req: dict[str, Any]) -> tuple[dict[str, Any], httpx.Response]:
        return req, await asyncio.wait_for(runner.client.request(**req), 5)

    return list(await asyncio.gather(*(one(r) for r in batch)))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_generated_requests_never_break_the_service(runner: Runner, forge_key: SigningKey) -> None:
    FORGE_KEY[:] = [forge_key]
    secrets = [*SECRETS, *runner.settings.secret_keys]

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(shape=request())
    def check(shape: dict[str, Any]) -> None:
        batch = [for_path(shape, template) for template in PATHS]
        for req, response in runner.call(send_all(runner, batch), 30):
            COUNT["requests"] += 1
            STATUSES[response.status_code] += 1
            assert response.status_code < 500, (req, response.status_code, response.text[:300])
            text = response.text + json.dumps(dict(response.headers))
            leaked = [s for s in secrets if s and s in text]
            assert not leaked, (req, "secret in response")

    check()
    assert COUNT["requests"] >= EXAMPLES * len(PATHS)
    # the generator reaches past the gates: stored events, refusals of every kind
    assert {200, 204, 400, 401, 404, 405, 413, 415} <= set(STATUSES), STATUSES
