"""Lifecycle callbacks over HTTP: applied in the order they were signed, seen by every process.

Atlassian may retry a callback, and a callback may be replayed while its token is still
valid. A callback signed before the last one applied changes nothing (204: it must not be sent
again). A reinstall taken in by one web process is seen by another at the first webhook signed
with the new secret.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from redis.asyncio import Redis

from app.atlassian.connect_jwt import encode_connect_token
from app.main import create_app
from app.settings import Settings
from app.tenants import TenantStore
from tests.connect.conftest import ConnectApp, install_body, signed


def at(app: ConnectApp, client_key: str, path: str, iat: int) -> dict[str, str]:
    """Headers of a callback to ``path`` signed at ``iat``."""
    return signed(app, client_key, path, iat=iat, exp=iat + 180)


async def webhook(client: httpx.AsyncClient, client_key: str, secret: str) -> httpx.Response:
    path = "/connect/webhooks/page_updated"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    body = {"page": {"id": 4242, "version": 2, "contentType": "page"}, "timestamp": 1}
    return await client.post(path, json=body, headers={"Authorization": f"JWT {token}"})


async def stored(app: ConnectApp, client_key: str) -> tuple[str, str]:
    tenant = await TenantStore(app.app.state.redis, app.settings).get(client_key)
    assert tenant is not None
    return tenant.status, tenant.shared_secret


async def test_an_older_install_arriving_late_does_not_roll_the_secret_back(
    connect_app: ConnectApp,
) -> None:
    client_key, now = f"ck-{uuid.uuid4()}", int(time.time())
    old, new = "o" * 40, "n" * 40
    first = at(connect_app, client_key, "/connect/installed", now - 60)
    post = connect_app.client.post
    assert (
        await post("/connect/installed", json=install_body(client_key, old), headers=first)
    ).status_code == 204
    again = at(connect_app, client_key, "/connect/installed", now - 30)
    assert (
        await post("/connect/installed", json=install_body(client_key, new), headers=again)
    ).status_code == 204
    late = await post("/connect/installed", json=install_body(client_key, old), headers=first)
    assert late.status_code == 204
    assert await stored(connect_app, client_key) == ("installed", new)
    assert (await webhook(connect_app.client, client_key, new)).status_code == 204
    assert (await webhook(connect_app.client, client_key, old)).status_code == 401


async def test_an_uninstall_retried_after_a_reinstall_is_ignored(connect_app: ConnectApp) -> None:
    client_key, now = f"ck-{uuid.uuid4()}", int(time.time())
    post = connect_app.client.post
    headers = at(connect_app, client_key, "/connect/installed", now - 90)
    await post("/connect/installed", json=install_body(client_key, "a" * 40), headers=headers)
    gone = at(connect_app, client_key, "/connect/uninstalled", now - 80)
    body = install_body(client_key, "", event="uninstalled")
    assert (await post("/connect/uninstalled", json=body, headers=gone)).status_code == 204
    assert await stored(connect_app, client_key) == ("uninstalled", "")  # the secret went
    back = at(connect_app, client_key, "/connect/installed", now - 20)
    await post("/connect/installed", json=install_body(client_key, "b" * 40), headers=back)
    assert (await post("/connect/uninstalled", json=body, headers=gone)).status_code == 204
    assert await stored(connect_app, client_key) == ("installed", "b" * 40)
    assert (await webhook(connect_app.client, client_key, "b" * 40)).status_code == 204


async def test_an_install_sent_again_leaves_a_disabled_site_disabled(
    connect_app: ConnectApp,
) -> None:
    client_key, secret = await connect_app.install()
    token = encode_connect_token(
        issuer=client_key, secret=secret, method="POST", url="/connect/disabled"
    )
    body = install_body(client_key, "", event="disabled")
    off = await connect_app.client.post(
        "/connect/disabled", json=body, headers={"Authorization": f"JWT {token}"}
    )
    assert off.status_code == 204
    await connect_app.install(client_key, secret)  # an upgrade sends `installed` again
    assert await stored(connect_app, client_key) == ("disabled", secret)
    refused = await webhook(connect_app.client, client_key, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "disabled_tenant")


async def test_a_disabled_signed_with_the_secret_of_an_uninstalled_site_changes_nothing(
    connect_app: ConnectApp,
) -> None:
    client_key, secret = await connect_app.install()
    gone = signed(connect_app, client_key, "/connect/uninstalled")
    body = install_body(client_key, "", event="uninstalled")
    assert (
        await connect_app.client.post("/connect/uninstalled", json=body, headers=gone)
    ).status_code == 204
    token = encode_connect_token(
        issuer=client_key, secret=secret, method="POST", url="/connect/disabled"
    )
    late = await connect_app.client.post(
        "/connect/disabled",
        json=install_body(client_key, "", event="disabled"),
        headers={"Authorization": f"JWT {token}"},
    )
    assert late.status_code == 204
    assert await stored(connect_app, client_key) == ("uninstalled", "")
    refused = await webhook(connect_app.client, client_key, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "uninstalled_tenant")


async def test_another_web_process_takes_a_reinstall_in_at_the_first_webhook_signed_for_it(
    connect_app: ConnectApp, settings: Settings, redis: Redis
) -> None:
    """Process B holds the tenant (cached for REACTOR_TENANT_CACHE_SECONDS) when process A
    takes a reinstall in. A webhook signed with the new secret does not fail on B (a 401 is
    never retried by Atlassian): B reads the tenant again before refusing."""
    other = create_app(settings, redis=redis)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as b:
            client_key, old = await connect_app.install()
            assert (await webhook(b, client_key, old)).status_code == 204  # B holds it now
            await asyncio.sleep(0.3)  # past the least age of a copy B reads again
            _, new = await connect_app.install(client_key, "r" * 40)
            assert (await webhook(b, client_key, new)).status_code == 204
            assert (await webhook(b, client_key, old)).status_code == 401


async def test_another_web_process_takes_in_a_reinstall_after_an_uninstall_it_held(
    connect_app: ConnectApp, settings: Settings, redis: Redis
) -> None:
    """B holds the uninstalled record (no secret) when A takes the reinstall in: the first
    webhook signed with the new secret is read through to the store, not refused."""
    other = create_app(settings, redis=redis)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as b:
            client_key, old = await connect_app.install()
            gone = signed(connect_app, client_key, "/connect/uninstalled")
            body = install_body(client_key, "", event="uninstalled")
            await connect_app.client.post("/connect/uninstalled", json=body, headers=gone)
            refused = await webhook(b, client_key, old)  # B holds it uninstalled now
            assert refused.json()["error"] == "uninstalled_tenant"
            await asyncio.sleep(0.3)
            _, new = await connect_app.install(client_key, "q" * 40)
            assert (await webhook(b, client_key, new)).status_code == 204


async def test_an_uninstalled_site_stops_waiting_for_budget(connect_app: ConnectApp) -> None:
    """Its jobs end as dead letters without reserving again: its place among the tenants
    waiting for budget goes at once, or it would hold the others back."""
    client_key, _ = await connect_app.install()
    redis = connect_app.app.state.redis
    backlog = f"{connect_app.settings.redis_prefix}budget:backlog"
    await redis.zadd(backlog, {client_key: (time.time() + 600) * 1000, "other-site": 1})
    gone = signed(connect_app, client_key, "/connect/uninstalled")
    body = install_body(client_key, "", event="uninstalled")
    assert (
        await connect_app.client.post("/connect/uninstalled", json=body, headers=gone)
    ).status_code == 204
    assert await redis.zrange(backlog, 0, -1) == [b"other-site"]


async def test_a_site_installed_under_a_new_clientkey_retires_the_old_one(
    connect_app: ConnectApp,
) -> None:
    """A site migration installs the app under a new clientKey, and the old one may never get
    its ``uninstalled``: it is retired then, or it would be swept with dead credentials and
    listed as a second live site forever. Other sites are left alone."""
    site = "https://acme.atlassian.net/wiki"
    old, old_secret = await connect_app.install(base_url=site)
    other, _ = await connect_app.install(base_url="https://other.atlassian.net/wiki")
    new, _ = await connect_app.install(base_url=site + "/")
    assert (await stored(connect_app, old))[0] == "uninstalled"
    assert (await stored(connect_app, other))[0] == "installed"
    assert (await stored(connect_app, new))[0] == "installed"
    refused = await webhook(connect_app.client, old, old_secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "uninstalled_tenant")


async def test_a_site_enabled_again_is_swept_from_then_not_from_when_it_went_off(
    connect_app: ConnectApp,
) -> None:
    """Webhooks were refused while the app was off: a sweep from the old watermark would
    react to everything changed meanwhile, which an admin who disabled it did not ask for."""
    from app.reconcile_state import Progress, ReconcileState

    client_key, secret = await connect_app.install()
    state = ReconcileState(connect_app.app.state.redis, connect_app.settings.redis_prefix)
    await state.set_watermark(client_key, 1_000)
    await state.save_progress("auto", client_key, Progress(since=1_000, started=2_000))

    async def toggle(event: str) -> None:
        path = f"/connect/{event}"
        token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
        body = install_body(client_key, "", event=event)
        answer = await connect_app.client.post(
            path, json=body, headers={"Authorization": f"JWT {token}"}
        )
        assert answer.status_code == 204

    await toggle("disabled")
    assert await state.watermark(client_key) == 1_000
    before = int(time.time() * 1000)
    await toggle("enabled")
    watermark = await state.watermark(client_key)
    assert watermark is not None and watermark >= before
    assert await state.progress("auto", client_key) is None


async def test_a_retired_clientkey_stops_waiting_for_budget(connect_app: ConnectApp) -> None:
    site = "https://moved.atlassian.net/wiki"
    old, _ = await connect_app.install(base_url=site)
    redis = connect_app.app.state.redis
    backlog = f"{connect_app.settings.redis_prefix}budget:backlog"
    await redis.zadd(backlog, {old: (time.time() + 600) * 1000})
    await connect_app.install(base_url=site)
    assert await redis.zrange(backlog, 0, -1) == []


async def test_a_captured_install_token_cannot_carry_another_secret(
    connect_app: ConnectApp,
) -> None:
    """The signed-install token names the request but not its body: once seen with one body,
    the same token with another (another secret, another base URL) is refused while it is
    valid; the same callback retried with its own body is still acknowledged."""
    client_key, now = f"ck-{uuid.uuid4()}", int(time.time())
    headers = at(connect_app, client_key, "/connect/installed", now)
    post = connect_app.client.post
    genuine = install_body(client_key, "g" * 40)
    assert (await post("/connect/installed", json=genuine, headers=headers)).status_code == 204
    forged = install_body(client_key, "f" * 40)
    replay = await post("/connect/installed", json=forged, headers=headers)
    assert replay.status_code == 401
    assert replay.json()["error"] == "token_reused"
    assert "f" * 40 not in replay.text
    retry = await post("/connect/installed", json=dict(reversed(genuine.items())), headers=headers)
    assert retry.status_code == 204  # the same body (key order aside): a retry
    assert await stored(connect_app, client_key) == ("installed", "g" * 40)
    assert (await webhook(connect_app.client, client_key, "f" * 40)).status_code == 401
    assert (await webhook(connect_app.client, client_key, "g" * 40)).status_code == 204


async def test_a_token_binding_lasts_as_long_as_the_token(connect_app: ConnectApp) -> None:
    client_key, now = f"ck-{uuid.uuid4()}", int(time.time())
    headers = at(connect_app, client_key, "/connect/installed", now)
    body = install_body(client_key, "s" * 40)
    assert (
        await connect_app.client.post("/connect/installed", json=body, headers=headers)
    ).status_code == 204
    redis: Redis = connect_app.app.state.redis
    pattern = f"{connect_app.settings.redis_prefix}tenant:lifecycle-token:*"
    keys = [k async for k in redis.scan_iter(pattern)]
    ttls = [await redis.ttl(k) for k in keys]
    leeway = connect_app.settings.jwt_leeway_seconds
    assert ttls and all(0 < ttl <= 180 + leeway for ttl in ttls)
