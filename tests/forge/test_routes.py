"""Forge Remote routes end to end: real sockets for the app and the JWKS host, real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
import structlog.testing
from redis.asyncio import Redis
from starlette.applications import Starlette

from app.atlassian import forge_token as ft
from app.atlassian.events import from_connect
from app.crypto import SecretBox
from app.embedded_redis import free_port
from app.errors import PermanentFailure
from app.installations import InstallationStore, require_system_token
from app.main import create_app
from app.queue import EventQueue
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.conftest import LiveServer
from tests.forge.conftest import (
    API_BASE_URL,
    CLOUD_ID,
    FORGE_FIXTURES,
    INSTALLATION_ID,
    JwksHost,
    SigningKey,
    SlowRedis,
    fit_claims,
    forge_unsigned,
    mint,
    system_token,
)

TENANT = f"forge:{CLOUD_ID}"
EXPECTED_TYPES = {
    "page-created": "page.created",
    "page-updated": "page.updated",
    "page-trashed": "page.trashed",
    "page-deleted": "page.deleted",
    "page-restored": "page.restored",
    "blogpost-created": "blogpost.created",
    "blogpost-updated": "blogpost.updated",
    "comment-created": "comment.created",
    "comment-updated": "comment.updated",
    "comment-deleted": "comment.deleted",
    "label-created": "label.added",
    "label-deleted": "label.removed",
    "attachment-created": "attachment.created",
}


class Forge:
    """Plays Atlassian: signs invocations and posts them to the service."""

    def __init__(self, app: Starlette, server: LiveServer, http: httpx.AsyncClient) -> None:
        self.app = app
        self.server = server
        self.http = http

    async def post(
        self,
        path: str,
        body: dict[str, Any] | None,
        *,
        token: str | None,
        system: str | None = None,
    ) -> httpx.Response:
        headers = {"content-type": "application/json", "x-b3-traceid": "5b8aa5a2d2c872e8"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        if system is not None:
            headers["x-forge-oauth-system"] = system
        content = b"" if body is None else json.dumps(body).encode()
        return await self.http.post(
            f"{self.server.url}{path}", content=content, headers=headers, timeout=5
        )


@pytest.fixture
async def forge(
    forge_settings: Settings, live_server: Callable[..., LiveServer]
) -> AsyncIterator[Forge]:
    app = create_app(forge_settings)
    server = live_server(app)
    async with httpx.AsyncClient() as http:
        yield Forge(app, server, http)


@pytest.fixture
def store(redis: Redis, forge_settings: Settings) -> InstallationStore:
    return InstallationStore(
        redis, SecretBox(forge_settings.secret_keys), forge_settings.redis_prefix
    )


def event_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FORGE_FIXTURES / "events" / f"{name}.json").read_text())
    return data


def assert_refused(response: httpx.Response, code: str, token: str | None = None) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == code and body["detail"]
    if token:
        assert token not in response.text


@pytest.mark.parametrize("name", sorted(EXPECTED_TYPES))
async def test_every_handled_event_reaches_the_queue(
    forge: Forge, keys: list[SigningKey], redis: Redis, forge_settings: Settings, name: str
) -> None:
    body = event_fixture(name)
    started = time.monotonic()
    response = await forge.post("/forge/events", body, token=mint(keys[0]))
    assert time.monotonic() - started < 5
    assert response.status_code == 200, response.text
    event_id = response.json()["id"]
    stored = await EventQueue(redis, forge_settings).get(event_id)
    assert stored is not None
    assert (stored.source, stored.tenant, stored.type) == ("forge", TENANT, EXPECTED_TYPES[name])
    content: dict[str, Any] = body.get("content") or body["attachment"]
    # Attachments are named in one form, ``att`` and digits, whichever form the payload used.
    expected = str(content["id"])
    if stored.type.startswith("attachment.") and not expected.startswith("att"):
        expected = f"att{expected}"
    assert stored.content_id == expected
    assert await redis.exists(f"arq:job:{event_id}")


async def test_both_envelopes_give_one_event_and_retries_are_recorded(
    forge: Forge, keys: list[SigningKey], store: InstallationStore
) -> None:
    body = event_fixture("page-updated")
    first = await forge.post("/forge/events", body, token=mint(keys[0]))
    assert first.json()["duplicate"] is False
    wrapped = {
        "payload": {
            **body,
            "retryContext": {
                "retryData": None,
                "retryCount": 2,
                "retryReason": "TIMEOUT_ERROR",
            },
        }
    }
    second = await forge.post("/forge/events", wrapped, token=mint(keys[0]))
    assert second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "duplicate": True}
    top_level_retry = {**body, "retryContext": {"retryCount": 1}}
    third = await forge.post("/forge/events", top_level_retry, token=mint(keys[0]))
    assert third.json()["duplicate"] is True
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None
    assert (installation.events, installation.retries, installation.last_retry_count) == (3, 2, 1)


async def test_label_on_a_space_and_unhandled_events_are_acknowledged_not_queued(
    forge: Forge, keys: list[SigningKey], redis: Redis, forge_settings: Settings
) -> None:
    space_label = event_fixture("label-created-on-space")
    response = await forge.post("/forge/events", space_label, token=mint(keys[0]))
    assert response.status_code == 200 and "ignored" in response.json()
    liked = {**event_fixture("page-created"), "eventType": "avi:confluence:liked:page"}
    response = await forge.post("/forge/events", liked, token=mint(keys[0]))
    assert response.status_code == 200 and "ignored" in response.json()
    assert await redis.zcard(f"{forge_settings.redis_prefix}queue") == 0


async def test_a_label_event_naming_its_content_as_labeled_content_is_stored(
    forge: Forge, keys: list[SigningKey], redis: Redis, forge_settings: Settings
) -> None:
    body = event_fixture("label-created")
    event = body.get("payload", body)
    event["labeledContent"] = event.pop("content")
    response = await forge.post("/forge/events", body, token=mint(keys[0]))
    assert response.status_code == 200 and "ignored" not in response.json(), response.text
    stored = await EventQueue(redis, forge_settings).get(response.json()["id"])
    assert stored is not None and stored.type == "label.added"


async def test_malformed_bodies_are_400_not_500(forge: Forge, keys: list[SigningKey]) -> None:
    no_id = event_fixture("page-created")
    del no_id["content"]["id"]
    response = await forge.post("/forge/events", no_id, token=mint(keys[0]))
    assert response.status_code == 400 and response.json()["error"] == "invalid_payload"
    response = await forge.http.post(
        f"{forge.server.url}/forge/events",
        content=b"[1, 2",
        headers={"authorization": f"Bearer {mint(keys[0])}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    for version in ("\u00b2", "9" * 5000):  # digits int() refuses or takes long to read
        odd_version = event_fixture("page-updated")
        odd_version["content"]["version"] = {"number": version}
        response = await forge.post("/forge/events", odd_version, token=mint(keys[0]))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_payload"
    for event_type in (["avi:confluence:created:page"], {"a": 1}, None, 7):
        odd = {**event_fixture("page-created"), "eventType": event_type}
        response = await forge.post("/forge/events", odd, token=mint(keys[0]))
        assert response.status_code == 400, event_type
        assert response.json()["error"] == "invalid_payload"


def _bad_tokens(keys: list[SigningKey]) -> list[tuple[str, str]]:
    now = time.time()
    hs = forge_unsigned({"alg": "HS256", "kid": keys[0].kid}, fit_claims(), keys[0].public_pem)
    return [
        (forge_unsigned({"alg": "none", "kid": keys[0].kid}, fit_claims(), None), "none"),
        (hs, "hs256"),
        (mint(keys[0], fit_claims(iss="someone/else")), "iss"),
        (mint(keys[0], fit_claims(aud="ari:cloud:ecosystem::app/other")), "aud"),
        (mint(keys[0], fit_claims(now - 100)), "expired"),
        (mint(keys[0], fit_claims(nbf=int(now) + 60, iat=int(now) + 60)), "nbf"),
        (mint(keys[2]), "kid"),
        (mint(keys[0], fit_claims(icLabel="orange")), "ic"),
        (mint(keys[2], fit_claims(), kid=keys[0].kid), "signature"),
    ]


CODES = {
    "none": ft.UNSUPPORTED_ALGORITHM,
    "hs256": ft.UNSUPPORTED_ALGORITHM,
    "iss": ft.WRONG_ISSUER,
    "aud": ft.WRONG_AUDIENCE,
    "expired": ft.EXPIRED,
    "nbf": ft.NOT_YET_VALID,
    "kid": ft.UNKNOWN_KID,
    "ic": ft.ISOLATED_CLOUD,
    "signature": ft.BAD_SIGNATURE,
}


async def test_bad_tokens_are_refused_with_a_reason_on_every_route(
    forge: Forge, keys: list[SigningKey], redis: Redis, forge_settings: Settings
) -> None:
    body = event_fixture("page-created")
    jwks = forge.app.state.forge.jwks(None)
    real_clock, later = jwks.clock, 0.0
    jwks.clock = lambda: real_clock() + later
    for path in ("/forge/events", "/forge/lifecycle", "/forge/token-refresh"):
        for token, case in _bad_tokens(keys):
            if case == "kid":  # a key set fetched for this token, which lacks its key
                later += jwks.min_refresh_interval + 1
            response = await forge.post(path, body, token=token, system=system_token(time.time()))
            assert_refused(response, CODES[case], token)
        assert_refused(await forge.post(path, body, token=None), ft.MISSING_TOKEN)
    assert await redis.zcard(f"{forge_settings.redis_prefix}queue") == 0
    assert not await redis.keys(f"{forge_settings.redis_prefix}forge:*")


async def test_rotated_keys_are_picked_up(
    forge: Forge, keys: list[SigningKey], jwks_host: JwksHost
) -> None:
    assert (await forge.post("/forge/events", {}, token=mint(keys[0]))).status_code != 401
    jwks_host.keys = [keys[1]]  # rotation: key 0 withdrawn, key 1 published
    jwks = forge.app.state.forge.jwks(None)
    # A refresh happened moments ago: the next one waits out the refresh interval, and the
    # token signed with the new key is told to come back then (503), not refused for good.
    held = await forge.post("/forge/events", {}, token=mint(keys[1]))
    assert held.status_code == 503 and held.headers["retry-after"]
    assert held.json()["error"] == "jwks_refresh_pending"
    real_clock = jwks.clock
    jwks.clock = lambda: real_clock() + jwks.min_refresh_interval + 1
    response = await forge.post("/forge/events", event_fixture("page-created"), token=mint(keys[1]))
    assert response.status_code == 200, response.text
    # The withdrawn key: refused once a key set fetched after it arrived lacks it.
    jwks.clock = lambda: real_clock() + 2 * jwks.min_refresh_interval + 2
    assert_refused(await forge.post("/forge/events", {}, token=mint(keys[0])), ft.UNKNOWN_KID)


async def test_a_flood_of_unknown_kids_barely_touches_the_jwks_host(
    forge: Forge, keys: list[SigningKey], jwks_host: JwksHost
) -> None:
    codes = []
    for i in range(40):
        token = mint(keys[0], kid=f"made-up-{i}")
        response = await forge.post("/forge/events", {}, token=token)
        assert response.status_code in (401, 503) and token not in response.text
        codes.append(response.json()["error"])
    # The first is refused against the key set fetched for it; the rest wait for a refresh
    # the interval holds back. None is accepted, and the host saw one request.
    assert codes == [ft.UNKNOWN_KID] + ["jwks_refresh_pending"] * 39
    assert jwks_host.hits == 1


async def test_jwks_host_down_is_503_never_401(
    forge_settings: Settings,
    live_server: Callable[..., LiveServer],
    keys: list[SigningKey],
    jwks_host: JwksHost,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    for url in (dead, jwks_host.url):
        jwks_host.status = 500
        app = create_app(forge_settings.model_copy(update={"forge_jwks_url": url}))
        server = live_server(app)
        async with httpx.AsyncClient() as http:
            response = await Forge(app, server, http).post(
                "/forge/events", event_fixture("page-created"), token=mint(keys[0])
            )
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "jwks_unavailable"
        assert response.headers["retry-after"]


async def test_a_malformed_key_set_is_503_and_a_cached_good_key_keeps_serving(
    forge: Forge, keys: list[SigningKey], jwks_host: JwksHost
) -> None:
    """A key whose ``alg`` is a list, or a document nested too deep to parse: the key server
    is unavailable (503, retried), never a 500; a refresh that gets one leaves the cached keys
    serving the requests they verify."""
    good = keys[0].jwk()
    jwks_host.document = json.dumps({"keys": [{**good, "alg": ["RS256"]}]}).encode()
    body = event_fixture("page-created")
    cold = await forge.post("/forge/events", body, token=mint(keys[0]))
    assert cold.status_code == 503, cold.text
    assert cold.json()["error"] == "jwks_unavailable" and cold.headers["retry-after"]
    jwks = forge.app.state.forge.jwks(None)
    real_clock, later = jwks.clock, jwks.min_refresh_interval + 1
    jwks.clock = lambda: real_clock() + later
    jwks_host.document = None  # the good set: fetched and cached
    assert (await forge.post("/forge/events", body, token=mint(keys[0]))).status_code == 200
    for document in (
        json.dumps({"keys": [good, {**keys[1].jwk(), "alg": {"name": "RS256"}}]}).encode(),
        b'{"keys":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ):
        jwks_host.document = document
        later += jwks.ttl + 1  # stale: this request's refresh gets the document
        hits = jwks_host.hits
        response = await forge.post("/forge/events", body, token=mint(keys[0]))
        assert response.status_code == 200, response.text
        assert jwks_host.hits == hits + 1


async def test_the_redis_steps_of_a_request_share_one_bound(
    forge_settings: Settings,
    live_server: Callable[..., LiveServer],
    keys: list[SigningKey],
    redis: Redis,
) -> None:
    """REACTOR_INGEST_TIMEOUT_SECONDS bounds a request's Redis steps together: with each reply
    0.3 s late (every step well within the 1 s bound on its own), an event of a linked site with
    a system token (six steps) is answered 503 once the second is spent, not 2xx seconds later
    (past Forge's 5 s limit with the default bound)."""
    await _connect_install(redis, forge_settings)
    async with SlowRedis(forge_settings.redis_url or "") as slow:
        settings = forge_settings.model_copy(
            update={"redis_url": slow.url, "ingest_timeout_seconds": 1.0}
        )
        app = create_app(settings)
        server = live_server(app)
        async with httpx.AsyncClient() as http:
            client = Forge(app, server, http)
            system = system_token(time.time() + 3600)
            body = event_fixture("page-created")
            fast = await client.post("/forge/events", body, token=mint(keys[0]), system=system)
            assert fast.status_code == 200, fast.text  # keys cached, scripts loaded
            slow.delay = 0.1  # six steps, 0.6 s in all: within the bound
            body = event_fixture("comment-created")
            within = await client.post("/forge/events", body, token=mint(keys[0]), system=system)
            assert within.status_code == 200, within.text
            slow.delay = 0.3
            started = time.monotonic()
            body = event_fixture("page-updated")
            late = await client.post("/forge/events", body, token=mint(keys[0]), system=system)
            took = time.monotonic() - started
            slow.delay = 0.0
    assert late.status_code == 503, late.text
    assert late.json()["error"] == "queue_unavailable" and late.headers["retry-after"]
    assert took < 1.0 + 0.3 + 0.4, took


async def test_system_token_is_captured_encrypted_and_used_until_it_expires(
    forge: Forge,
    keys: list[SigningKey],
    redis: Redis,
    forge_settings: Settings,
    store: InstallationStore,
) -> None:
    exp = int(time.time()) + 90 * 60
    token = system_token(exp)
    response = await forge.post(
        "/forge/token-refresh", {}, token=mint(keys[0], route="/forge/token-refresh"), system=token
    )
    assert response.status_code == 200 and response.json()["system_token"] is True
    raw = await redis.get(f"{forge_settings.redis_prefix}forge:token:{INSTALLATION_ID}")
    assert raw is not None and token.encode() not in raw
    assert token.encode() not in b"".join(
        [await redis.dump(k) or b"" for k in await redis.keys(f"{forge_settings.redis_prefix}*")]
    )
    got = await require_system_token(store, TENANT)
    assert got == (token, API_BASE_URL, exp)
    # what the Confluence client does with it: Bearer on apiBaseUrl
    seen: list[httpx.Request] = []

    def confluence(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(confluence)) as client:
        await client.get(
            f"{got.api_base_url}/wiki/api/v2/pages/838205441",
            headers={"Authorization": f"Bearer {got.token}"},
        )
    assert seen[0].url.host == "api.atlassian.com"
    assert seen[0].url.path == f"/ex/confluence/{CLOUD_ID}/wiki/api/v2/pages/838205441"
    assert seen[0].headers["authorization"] == f"Bearer {token}"
    # expiry: the key dies with the token
    ttl = await redis.ttl(f"{forge_settings.redis_prefix}forge:token:{INSTALLATION_ID}")
    assert 90 * 60 - 10 <= ttl <= 90 * 60
    await redis.pexpire(f"{forge_settings.redis_prefix}forge:token:{INSTALLATION_ID}", 1)
    time.sleep(0.02)
    assert await store.system_token(INSTALLATION_ID) is None


async def test_a_junk_system_token_cannot_keep_atlassians_next_one_out(
    forge: Forge, keys: list[SigningKey], store: InstallationStore
) -> None:
    """The system token beside a replayed invocation token is not kept; one beside an
    invocation nobody saw before is kept only until the next invocation brings Atlassian's,
    whatever expiry it claims, and never longer than two hours."""
    now = time.time()
    path = "/forge/token-refresh"
    fit = mint(keys[0], fit_claims(now - 10), route=path)
    genuine = system_token(now + 3600)
    assert (await forge.post(path, {}, token=fit, system=genuine)).status_code == 200
    junk = jwt.encode({"exp": int(now) + 10**9}, "attacker-key-" + "x" * 20)
    with structlog.testing.capture_logs() as logs:
        replayed = await forge.post(path, {}, token=fit, system=junk)
    assert replayed.status_code == 200  # the invocation itself is one Forge made
    assert (await require_system_token(store, TENANT)).token == genuine
    assert any("came before with another" in e["event"] for e in logs)
    assert fit not in repr(logs) and junk not in repr(logs)
    # a FIT never delivered to us (captured and held back) brings junk claiming a day...
    unseen = mint(keys[0], fit_claims(now - 5), route=path)
    assert (await forge.post(path, {}, token=unseen, system=junk)).status_code == 200
    held = await require_system_token(store, TENANT)
    assert held.token == junk and held.expires_at <= time.time() + 2 * 3600
    # ...until the next trigger: Atlassian's token, claiming less, replaces it
    following = system_token(now + 3660)
    fresh = mint(keys[0], fit_claims(now), route=path)
    assert (await forge.post(path, {}, token=fresh, system=following)).status_code == 200
    assert (await require_system_token(store, TENANT)).token == following
    # and the held-back FIT, delivered late, does not bring the junk back
    late = await forge.post("/forge/token-refresh", {}, token=unseen, system=junk)
    assert late.status_code == 200
    assert (await require_system_token(store, TENANT)).token == following


async def test_lifecycle_and_pre_uninstall(
    forge: Forge, keys: list[SigningKey], store: InstallationStore
) -> None:
    lifecycle = FORGE_FIXTURES / "lifecycle"
    exp = int(time.time()) + 7200
    for name in ("installed", "upgraded"):
        body = json.loads((lifecycle / f"{name}.json").read_text())
        response = await forge.post(
            "/forge/lifecycle",
            body,
            token=mint(keys[0], route="/forge/lifecycle"),
            system=system_token(exp),
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"installation": INSTALLATION_ID, "tenant": TENANT}
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None
    assert installation.installed_at and installation.upgraded_at
    assert installation.token_expires_at == exp
    assert await store.system_token(INSTALLATION_ID) is not None
    body = json.loads((lifecycle / "pre-uninstall.json").read_text())
    response = await forge.post(
        "/forge/pre-uninstall", body, token=mint(keys[0], route="/forge/pre-uninstall")
    )
    assert response.status_code == 200
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None and installation.status == "uninstalling"
    assert await store.system_token(INSTALLATION_ID) is None


async def _connect_install(redis: Redis, settings: Settings, status: str = "installed") -> str:
    """The site's Connect install, whose payload named this Forge installation."""
    client_key = "3a9c2b4e-connect-client-key"
    tenants = TenantStore(redis, settings)
    await tenants.upsert(
        Tenant(
            client_key=client_key,
            shared_secret="s" * 32,
            base_url="https://example.atlassian.net/wiki",
            installation_id=INSTALLATION_ID,
        )
    )
    if status != "installed":
        await tenants.mark_status(client_key, status)  # type: ignore[arg-type]
    return client_key


async def test_a_site_registered_both_ways_is_one_tenant_and_dedupes(
    forge: Forge,
    keys: list[SigningKey],
    redis: Redis,
    forge_settings: Settings,
    store: InstallationStore,
) -> None:
    client_key = await _connect_install(redis, forge_settings)
    forge_body = event_fixture("page-created")
    content = forge_body["content"]
    connect_body = {
        "page": {
            "idAsString": content["id"],
            "id": int(content["id"]),
            "spaceKey": content["space"]["key"],
            "spaceId": content["space"]["id"],
            "title": content["title"],
            "contentType": "page",
            "version": content["version"]["number"],
            "creationDate": 1611124161707,
            "modificationDate": 1611124161707,
        },
        "timestamp": 1611124161907,
        "userAccountId": forge_body["atlassianId"],
        "accountType": "customer",
    }
    connect_event = from_connect(client_key, "page_created", connect_body)
    response = await forge.post("/forge/events", forge_body, token=mint(keys[0]))
    assert response.status_code == 200
    assert response.json() == {"id": connect_event.id, "duplicate": False}
    stored = await EventQueue(redis, forge_settings).get(connect_event.id)
    assert stored is not None and stored.tenant == client_key
    assert await EventQueue(redis, forge_settings).put(connect_event) is False
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None and installation.tenant == client_key


async def test_the_site_keeps_its_tenant_id_when_its_connect_install_goes(
    forge: Forge,
    keys: list[SigningKey],
    redis: Redis,
    forge_settings: Settings,
    store: InstallationStore,
) -> None:
    """Once linked, the site is the clientKey's for good: after the Connect uninstall its Forge
    installation serves it alone (with its system token) under the same tenant id, and so
    does a new installation on the site that the Connect install never named. A new id would
    start the site afresh: every event id, "once" effect and sweep watermark is per tenant,
    so reactions would run again."""
    client_key = await _connect_install(redis, forge_settings)
    linked = await forge.post("/forge/events", event_fixture("page-created"), token=mint(keys[0]))
    assert linked.status_code == 200
    await TenantStore(redis, forge_settings).mark_status(client_key, "uninstalled")
    system = system_token(int(time.time()) + 3600)
    response = await forge.post(
        "/forge/events", event_fixture("page-updated"), token=mint(keys[0]), system=system
    )
    assert response.status_code == 200
    stored = await EventQueue(redis, forge_settings).get(response.json()["id"])
    assert stored is not None and stored.tenant == client_key
    assert (await require_system_token(store, client_key)).token == system
    reinstalled = "ari:cloud:ecosystem::installation/0d1e2f30-4a5b-4c6d-8e9f-a0b1c2d3e4f5"
    assert await store.resolve_tenant(reinstalled, CLOUD_ID) == client_key
    assert await store.resolve_tenant(reinstalled, "another-cloud") == "forge:another-cloud"


async def test_a_disabled_connect_install_refuses_the_sites_forge_events(
    forge: Forge, keys: list[SigningKey], redis: Redis, forge_settings: Settings
) -> None:
    """Refused as the Connect route refuses them, never acknowledged only to be dead-lettered."""
    await _connect_install(redis, forge_settings, status="disabled")
    response = await forge.post("/forge/events", event_fixture("page-created"), token=mint(keys[0]))
    assert response.status_code == 401
    assert response.json()["error"] == "disabled_tenant"
    assert await redis.zcard(f"{forge_settings.redis_prefix}events") == 0
    # managing the installation is not reacting: a pre-uninstall still goes through
    gone = await forge.post(
        "/forge/pre-uninstall", {}, token=mint(keys[0], route="/forge/pre-uninstall")
    )
    assert gone.status_code == 200 and gone.json()["status"] == "uninstalling"


async def test_a_token_issued_to_one_of_our_modules_is_good_for_its_route_only(
    forge: Forge, keys: list[SigningKey], store: InstallationStore
) -> None:
    """A token captured from an event delivery (module ep-events) cannot mark the installation
    uninstalling; the pre-uninstall module's own token can, and a module key the manifest of
    this project does not use (one's own manifest) is not checked."""
    captured = mint(keys[0], route="/forge/events")
    refused = await forge.post("/forge/pre-uninstall", {}, token=captured)
    assert refused.status_code == 401 and refused.json()["error"] == "wrong_module"
    assert "ep-events" in refused.json()["detail"]
    installation = await store.get(INSTALLATION_ID)
    assert installation is None or installation.status != "uninstalling"
    trigger = fit_claims()
    trigger["app"]["module"]["key"] = "confluence-events"  # the trigger module's key
    event = await forge.post(
        "/forge/events", event_fixture("page-created"), token=mint(keys[0], trigger)
    )
    assert event.status_code == 200
    own = fit_claims()
    own["app"]["module"]["key"] = "my-uninstall-hook"
    assert (
        await forge.post("/forge/pre-uninstall", {}, token=mint(keys[0], own))
    ).status_code == 200
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None and installation.status == "uninstalling"


async def test_a_late_event_does_not_bring_an_uninstalling_installation_back(
    forge: Forge, keys: list[SigningKey], store: InstallationStore
) -> None:
    """Neither the installation nor its token: a late event or a retry carrying a system token
    leaves the jobs of an installation being uninstalled failing; ``installed`` revives both."""
    tenant = TENANT
    assert (
        await forge.post(
            "/forge/pre-uninstall", {}, token=mint(keys[0], route="/forge/pre-uninstall")
        )
    ).status_code == 200
    late = await forge.post(
        "/forge/events",
        event_fixture("page-created"),
        token=mint(keys[0]),
        system=system_token(int(time.time()) + 3600),
    )
    assert late.status_code == 200
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None and installation.status == "uninstalling"
    assert installation.token_expires_at is None
    with pytest.raises(PermanentFailure, match="uninstalled"):
        await require_system_token(store, tenant)
    again = {"eventType": "avi:forge:installed:app"}
    installed = await forge.post(
        "/forge/lifecycle",
        again,
        token=mint(keys[0], route="/forge/lifecycle"),
        system=system_token(int(time.time()) + 3600),
    )
    assert installed.status_code == 200
    installation = await store.get(INSTALLATION_ID)
    assert installation is not None and installation.status == "active"
    assert (await require_system_token(store, tenant)).api_base_url == API_BASE_URL


async def test_without_an_app_id_forge_calls_are_refused(
    settings: Settings, live_server: Callable[..., LiveServer], keys: list[SigningKey]
) -> None:
    app = create_app(settings)
    server = live_server(app)
    async with httpx.AsyncClient() as http:
        response = await Forge(app, server, http).post("/forge/events", {}, token=mint(keys[0]))
    assert_refused(response, "forge_not_configured")


async def test_allowed_isolated_cloud_label_uses_its_own_jwks(
    forge_settings: Settings,
    live_server: Callable[..., LiveServer],
    keys: list[SigningKey],
    jwks_host: JwksHost,
) -> None:
    template = jwks_host.url + "?ic={IC_LABEL}"
    ic_settings = forge_settings.model_copy(
        update={
            "forge_allow_ic_labels": "orange",
            "forge_ic_jwks_url_template": template,
            "forge_jwks_url": f"http://127.0.0.1:{free_port()}/nowhere.json",
        }
    )
    app = create_app(ic_settings)
    server = live_server(app)
    body = event_fixture("page-created")
    async with httpx.AsyncClient() as http:
        client = Forge(app, server, http)
        allowed = await client.post(
            "/forge/events", body, token=mint(keys[0], fit_claims(icLabel="orange"))
        )
        other = await client.post(
            "/forge/events", body, token=mint(keys[0], fit_claims(icLabel="blue"))
        )
    assert allowed.status_code == 200, allowed.text
    assert jwks_host.hits == 1
    assert_refused(other, ft.ISOLATED_CLOUD)


async def test_logs_carry_the_retry_count_and_no_secrets(
    forge: Forge, keys: list[SigningKey]
) -> None:
    body = {**event_fixture("comment-created"), "retryContext": {"retryCount": 3}}
    token = mint(keys[0])
    system = system_token(time.time() + 7200)
    with structlog.testing.capture_logs() as logs:
        response = await forge.post("/forge/events", body, token=token, system=system)
    assert response.status_code == 200
    stored = [e for e in logs if e["event"] == "forge event stored"]
    assert len(stored) == 1
    assert stored[0]["retry_count"] == 3 and stored[0]["installation_id"] == INSTALLATION_ID
    assert stored[0]["event_id"] == response.json()["id"]
    text = repr(logs)
    assert token not in text and system not in text


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/jsonx", b'{"eventType": "avi:forge:installed:app"}', 415),
        ("text/plain", b'{"eventType": "avi:forge:installed:app"}', 415),
        ("application/json", b'{"eventType": "avi:forge:installed:app", "n": NaN}', 400),
        ("application/json", b"[1]", 400),
        ("application/ld+json", b'{"eventType": "avi:forge:installed:app"}', 200),
        (None, b"", 200),  # no body at all: an empty object
    ],
)
async def test_lifecycle_bodies_are_checked_as_event_bodies_are(
    forge: Forge, keys: list[SigningKey], content_type: str | None, body: bytes, status: int
) -> None:
    headers = {"authorization": f"Bearer {mint(keys[0], route='/forge/lifecycle')}"}
    if content_type is not None:
        headers["content-type"] = content_type
    response = await forge.http.post(
        f"{forge.server.url}/forge/lifecycle", content=body, headers=headers, timeout=5
    )
    assert response.status_code == status, response.text
