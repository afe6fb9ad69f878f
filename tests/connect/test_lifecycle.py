"""Lifecycle callbacks through the app: signed installs, reinstall, uninstall, enable/disable."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from app.atlassian.connect_jwt import encode_connect_token
from app.install_keys import InstallKeys
from app.tenants import TenantStore
from app.web import connect_auth

from .conftest import ConnectApp, InstallKey, install_body, install_claims, signed


async def webhook(app: ConnectApp, client_key: str, secret: str) -> httpx.Response:
    path = "/connect/webhooks/page_updated"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    body = {"page": {"id": 42, "version": 2, "contentType": "page"}, "timestamp": 1}
    return await app.client.post(path, json=body, headers={"Authorization": f"JWT {token}"})


async def test_install_stores_the_tenant(connect_app: ConnectApp) -> None:
    install = "ari:cloud:ecosystem::installation/" + str(uuid.uuid4())
    client_key, secret = await connect_app.install(installation_id=install)
    store: TenantStore = connect_app.app.state.tenants
    store.forget()
    tenant = await store.get(client_key)
    assert tenant is not None
    assert (tenant.shared_secret, tenant.status) == (secret, "installed")
    assert tenant.base_url == f"https://{client_key}.atlassian.net/wiki"
    assert tenant.oauth_client_id == "oauth-client-1"
    found = await store.by_installation_id(install)
    assert found is not None and found.client_key == client_key


async def test_reinstall_rotates_the_secret(connect_app: ConnectApp) -> None:
    client_key, old = await connect_app.install()
    _, new = await connect_app.install(client_key, "rotated-" + "n" * 32)
    assert (await webhook(connect_app, client_key, new)).status_code == 204
    refused = await webhook(connect_app, client_key, old)
    assert (refused.status_code, refused.json()["error"]) == (401, "bad_signature")


async def test_reinstall_needs_a_valid_signature(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    attacker = InstallKey(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), connect_app.install_key.kid
    )
    claims = install_claims(
        client_key=client_key,
        method="POST",
        path="/connect/installed",
        aud=connect_app.settings.base_url,
    )
    resp = await connect_app.client.post(
        "/connect/installed",
        json=install_body(client_key, "attacker-secret-" + "a" * 20),
        headers={"Authorization": f"JWT {attacker.sign(claims)}"},
    )
    assert (resp.status_code, resp.json()["error"]) == (401, "bad_signature")
    hs = jwt.encode(claims, secret, algorithm="HS256")
    resp = await connect_app.client.post(
        "/connect/installed",
        json=install_body(client_key, "attacker-secret-" + "a" * 20),
        headers={"Authorization": f"JWT {hs}"},
    )
    assert (resp.status_code, resp.json()["error"]) == (401, "wrong_algorithm")
    connect_app.app.state.tenants.forget()
    assert (await webhook(connect_app, client_key, secret)).status_code == 204


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"aud": "https://evil.test"}, "wrong_audience"),
        ({"iss": "someone-else"}, "issuer_mismatch"),
        ({"qsh": "context-qsh"}, "context_qsh_not_allowed"),
        ({"qsh": "0" * 64}, "qsh_mismatch"),
        ({"exp": 1000, "iat": 900}, "expired"),
    ],
)
async def test_install_rejections(
    connect_app: ConnectApp, overrides: dict[str, Any], code: str
) -> None:
    resp = await connect_app.client.post(
        "/connect/installed",
        json=install_body("ck-x", "s" * 32),
        headers=signed(connect_app, "ck-x", "/connect/installed", **overrides),
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == code
    assert await connect_app.app.state.tenants.get("ck-x") is None


@pytest.mark.parametrize("kid", ["../../etc/passwd", "..%2F..%2Fx", "key?x=1", "me@evil.test"])
async def test_install_with_unsafe_kid(connect_app: ConnectApp, kid: str) -> None:
    claims = install_claims(
        client_key="ck-x",
        method="POST",
        path="/connect/installed",
        aud=connect_app.settings.base_url,
    )
    token = InstallKey(connect_app.install_key.private, kid).sign(claims)
    resp = await connect_app.client.post(
        "/connect/installed",
        json=install_body("ck-x", "s" * 32),
        headers={"Authorization": f"JWT {token}"},
    )
    assert (resp.status_code, resp.json()["error"]) == (401, "bad_key_id")


async def test_install_body_problems(connect_app: ConnectApp) -> None:
    headers = signed(connect_app, "ck-x", "/connect/installed")
    unreadable = await connect_app.client.post(
        "/connect/installed",
        content=b"{not json",
        headers={**headers, "content-type": "application/json"},
    )
    # without a readable clientKey the token cannot be tied to the body: not authenticated
    assert (unreadable.status_code, unreadable.json()["error"]) == (401, "issuer_mismatch")
    incomplete = await connect_app.client.post(
        "/connect/installed",
        json={"clientKey": "ck-x", "baseUrl": "https://x.atlassian.net/wiki"},
        headers=headers,
    )
    assert (incomplete.status_code, incomplete.json()["error"]) == (
        400,
        "invalid_lifecycle_payload",
    )
    assert await connect_app.app.state.tenants.get("ck-x") is None


@pytest.mark.parametrize("failure", ["down", "slow", "error"])
async def test_key_server_failure_is_503(connect_app: ConnectApp, failure: str) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if failure == "down":
            raise httpx.ConnectError("refused", request=request)
        if failure == "slow":
            await asyncio.sleep(10)
        return httpx.Response(502)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    connect_app.app.state.install_keys = InstallKeys(http, "https://keys.test", timeout=0.3)
    resp = await asyncio.wait_for(
        connect_app.client.post(
            "/connect/installed",
            json=install_body("ck-x", "s" * 32),
            headers=signed(connect_app, "ck-x", "/connect/installed"),
        ),
        timeout=3,
    )
    await http.aclose()
    assert resp.status_code == 503
    assert resp.json()["error"] == "install_keys_unavailable"
    assert resp.headers["retry-after"]


async def test_uninstall_stops_webhooks_and_keeps_history(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    resp = await connect_app.client.post(
        "/connect/uninstalled",
        json=install_body(client_key, "", event="uninstalled"),
        headers=signed(connect_app, client_key, "/connect/uninstalled"),
    )
    assert resp.status_code == 204
    refused = await webhook(connect_app, client_key, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "uninstalled_tenant")
    tenant = await TenantStore(connect_app.app.state.redis, connect_app.settings).get(client_key)
    assert tenant is not None and tenant.status == "uninstalled"


async def test_uninstall_token_for_install_path_is_refused(connect_app: ConnectApp) -> None:
    client_key, _ = await connect_app.install()
    resp = await connect_app.client.post(
        "/connect/uninstalled",
        json=install_body(client_key, "", event="uninstalled"),
        headers=signed(connect_app, client_key, "/connect/installed"),
    )
    assert (resp.status_code, resp.json()["error"]) == (401, "qsh_mismatch")


async def test_enable_and_disable_with_the_shared_secret(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()

    async def toggle(event: str, key: str = secret) -> httpx.Response:
        path = f"/connect/{event}"
        token = encode_connect_token(issuer=client_key, secret=key, method="POST", url=path)
        return await connect_app.client.post(
            path,
            json=install_body(client_key, "", event=event),
            headers={"Authorization": f"JWT {token}"},
        )

    assert (await toggle("disabled")).status_code == 204
    assert (await connect_app.app.state.tenants.get(client_key)).status == "disabled"
    refused = await webhook(connect_app, client_key, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "disabled_tenant")
    assert (await toggle("enabled", "wrong-" + "w" * 30)).status_code == 401
    assert (await toggle("enabled")).status_code == 204
    assert (await connect_app.app.state.tenants.get(client_key)).status == "enabled"
    assert (await webhook(connect_app, client_key, secret)).status_code == 204


@pytest.mark.parametrize("event", ["enabled", "disabled", "uninstalled"])
async def test_a_callback_for_another_app_key_changes_nothing(
    connect_app: ConnectApp, event: str
) -> None:
    client_key, _ = await connect_app.install()
    path = f"/connect/{event}"
    resp = await connect_app.client.post(
        path,
        json={**install_body(client_key, "", event=event), "key": "another-app"},
        headers=signed(connect_app, client_key, path),
    )
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_payload")
    assert (await connect_app.app.state.tenants.get(client_key)).status == "installed"


async def test_enabled_signed_install_style(connect_app: ConnectApp) -> None:
    client_key, _ = await connect_app.install()
    resp = await connect_app.client.post(
        "/connect/disabled",
        json=install_body(client_key, "", event="disabled"),
        headers=signed(connect_app, client_key, "/connect/disabled"),
    )
    assert resp.status_code == 204
    assert (await connect_app.app.state.tenants.get(client_key)).status == "disabled"


async def test_disabled_after_uninstall_is_acknowledged(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    await connect_app.client.post(
        "/connect/uninstalled",
        json=install_body(client_key, "", event="uninstalled"),
        headers=signed(connect_app, client_key, "/connect/uninstalled"),
    )
    token = encode_connect_token(
        issuer=client_key, secret=secret, method="POST", url="/connect/disabled"
    )
    resp = await connect_app.client.post(
        "/connect/disabled",
        json=install_body(client_key, "", event="disabled"),
        headers={"Authorization": f"JWT {token}"},
    )
    assert resp.status_code == 204
    assert (await connect_app.app.state.tenants.get(client_key)).status == "uninstalled"


async def test_unsigned_disabled_is_acknowledged_and_changes_nothing(
    connect_app: ConnectApp,
) -> None:
    """Atlassian sends `disabled` after `uninstalled` without a JWT (AC-2561): 204, and as
    nothing proves its origin, an active tenant stays active."""
    client_key, _ = await connect_app.install()
    resp = await connect_app.client.post(
        "/connect/disabled", json=install_body(client_key, "", event="disabled")
    )
    assert resp.status_code == 204
    assert (await connect_app.app.state.tenants.get(client_key)).status == "installed"
    enabled = await connect_app.client.post(
        "/connect/enabled", json=install_body(client_key, "", event="enabled")
    )
    assert enabled.status_code == 401, "only `disabled` comes unsigned"
    forged = await connect_app.client.post(
        "/connect/disabled",
        json=install_body(client_key, "", event="disabled"),
        headers={"Authorization": "JWT not.a.token"},
    )
    assert forged.status_code == 401
    assert (await connect_app.app.state.tenants.get(client_key)).status == "installed"


async def test_install_callbacks_refused_on_their_claims_cost_no_key_fetch(
    connect_app: ConnectApp,
) -> None:
    """Anyone can name a kid: a callback whose claims fail anyway (another audience, another
    request, the body's clientKey not the issuer) is refused before the key server is asked."""
    keys: InstallKeys = connect_app.app.state.install_keys
    before = keys.fetches
    client_key = "ck-probe"
    for overrides in (
        {"aud": "https://elsewhere.example.com"},
        {"qsh": "0" * 64},
        {"iss": "ck-someone-else"},
        {"exp": int(time.time()) - 3600},
    ):
        claims = install_claims(
            client_key=client_key,
            method="POST",
            path="/connect/installed",
            aud=connect_app.settings.base_url,
        )
        claims.update(overrides)
        made_up = {"kid": f"made-up-{next(iter(overrides))}"}
        token = connect_app.install_key.sign(claims, headers=made_up)
        resp = await connect_app.client.post(
            "/connect/installed",
            json=install_body(client_key, "s" * 32),
            headers={"Authorization": f"JWT {token}"},
        )
        assert resp.status_code == 401, (overrides, resp.text)
    assert keys.fetches == before


async def test_a_refused_install_is_a_warning_naming_the_audience_and_the_base_url(
    connect_app: ConnectApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A REACTOR_BASE_URL differing between replicas (or changed since Atlassian read the
    descriptor) refuses every install: the operator sees the aud received next to it."""
    out = io.StringIO()
    processors = [structlog.processors.add_log_level, structlog.processors.JSONRenderer()]
    line = structlog.wrap_logger(structlog.PrintLogger(out), processors=processors)
    monkeypatch.setattr(connect_auth, "log", line)
    resp = await connect_app.client.post(
        "/connect/installed",
        json=install_body("ck-x", "s" * 32),
        headers=signed(connect_app, "ck-x", "/connect/installed", aud="https://other.test"),
    )
    assert resp.json()["error"] == "wrong_audience"
    (entry,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert entry["event"] == "connect.rejected" and entry["level"] == "warning"
    assert entry["reason"] == "wrong_audience" and entry["client_key"] == "ck-x"
    assert entry["aud"] == ["https://other.test"]
    assert entry["base_url"] == connect_app.settings.base_url
    # a refused webhook stays at info: it is no install, and carries no audience
    out.truncate(0)
    out.seek(0)
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_updated"
    token = encode_connect_token(issuer=client_key, secret=secret + "x", method="POST", url=path)
    await connect_app.client.post(path, json={}, headers={"Authorization": f"JWT {token}"})
    (refused,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert refused["level"] == "info" and "aud" not in refused
