"""Which credentials a job gets for its tenant, as the site's install state stands when it runs."""

from __future__ import annotations

import time

import httpx
import pytest
from redis.asyncio import Redis

from app.atlassian.connect_jwt import parse_token, verify_connect_token
from app.budget.redis_budget import RedisBudget
from app.crypto import SecretBox
from app.errors import Defer, PermanentFailure
from app.installations import InstallationStore, SystemToken
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.forge.conftest import API_BASE_URL, INSTALLATION_ID, system_token
from tests.forge.test_installations import invocation
from workers.clients import TenantClients, job_tenants

CLIENT_KEY = "ck-both-ways"


@pytest.fixture
async def parts(redis: Redis, settings: Settings) -> tuple[TenantStore, InstallationStore]:
    tenants = job_tenants(redis, settings)
    installations = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    await tenants.upsert(
        Tenant(CLIENT_KEY, "s" * 40, "https://acme.atlassian.net/wiki"), issued_at=1000
    )
    return tenants, installations


async def clients_of(
    redis: Redis, settings: Settings, parts: tuple[TenantStore, InstallationStore]
) -> TenantClients:
    return TenantClients(
        httpx.AsyncClient(), settings, parts[0], parts[1], RedisBudget(redis, settings)
    )


async def test_a_disabled_site_s_jobs_wait_and_run_once_it_is_enabled(
    redis: Redis, settings: Settings, parts: tuple[TenantStore, InstallationStore]
) -> None:
    tenants, _ = parts
    clients = await clients_of(redis, settings, parts)
    await tenants.mark_status(CLIENT_KEY, "disabled", issued_at=1010)
    with pytest.raises(Defer) as waited:
        await clients.site(CLIENT_KEY)
    # given up before the events queued behind it expire (their records keep the event
    # retention from their arrival), so that none of them is dropped unseen
    bound = waited.value.give_up_after
    assert bound is not None and bound < settings.event_retention_seconds
    await tenants.mark_status(CLIENT_KEY, "enabled", issued_at=1020)
    site = await clients.site(CLIENT_KEY)
    assert (site.mode, site.api_root) == ("connect", "https://acme.atlassian.net")


async def test_a_reinstall_s_secret_is_used_by_the_next_job(
    redis: Redis, settings: Settings, parts: tuple[TenantStore, InstallationStore]
) -> None:
    """The web process takes the reinstall in; a worker's next job signs with the new secret
    (an old one would get a 401, which ends a job as a dead letter)."""
    clients = await clients_of(redis, settings, parts)
    await clients.site(CLIENT_KEY)
    web = TenantStore(redis, settings)
    await web.upsert(
        Tenant(CLIENT_KEY, "n" * 40, "https://acme.atlassian.net/wiki"), issued_at=1100
    )
    signed = httpx.Request("GET", "https://acme.atlassian.net/wiki/api/v2/pages/1")
    site = await clients.site(CLIENT_KEY)
    flow = site.auth.auth_flow(signed)
    request = next(flow)
    token = request.headers["authorization"].removeprefix("JWT ")
    claims = verify_connect_token(
        parse_token(token),
        secret_for=lambda iss: "n" * 40,
        method="GET",
        url="/wiki/api/v2/pages/1",
        base_url="https://acme.atlassian.net/wiki",
        leeway=30,
    )
    assert claims.issuer == settings.app_key


async def test_an_uninstalled_connect_site_still_served_by_forge_uses_the_forge_token(
    redis: Redis, settings: Settings, parts: tuple[TenantStore, InstallationStore]
) -> None:
    """Events queued under the clientKey before the Connect side went run with the linked
    Forge installation's token; without one, they end as dead letters as before."""
    tenants, installations = parts
    clients = await clients_of(redis, settings, parts)
    await tenants.mark_status(CLIENT_KEY, "uninstalled", issued_at=1010)
    with pytest.raises(PermanentFailure, match="uninstalled"):
        await clients.site(CLIENT_KEY)
    await installations.register(invocation(), CLIENT_KEY)
    exp = int(time.time()) + 3600
    await installations.save_system_token(
        INSTALLATION_ID, SystemToken(system_token(exp), API_BASE_URL, exp)
    )
    site = await clients.site(CLIENT_KEY)
    assert (site.mode, site.api_root) == ("forge", API_BASE_URL)


async def test_waits_end_before_the_events_behind_them_expire(
    redis: Redis, settings: Settings, parts: tuple[TenantStore, InstallationStore]
) -> None:
    """With a short event retention, neither a disabled site's wait nor a Forge token's wait
    outlasts it: the head is dead-lettered while the events queued behind it still exist."""
    short = settings.model_copy(update={"event_retention_seconds": 6 * 3600})
    tenants, installations = parts
    clients = TenantClients(
        httpx.AsyncClient(), short, tenants, installations, RedisBudget(redis, short)
    )
    await tenants.mark_status(CLIENT_KEY, "disabled", issued_at=1010)
    with pytest.raises(Defer) as disabled:
        await clients.site(CLIENT_KEY)
    await installations.register(invocation(cloud_id="cloud-short"), "forge:cloud-short")
    with pytest.raises(Defer) as tokenless:
        await clients.site("forge:cloud-short")
    for wait in (disabled.value, tokenless.value):
        assert wait.give_up_after is not None and wait.give_up_after <= 5 * 3600
