"""Installation registry, encrypted system tokens, tenant resolution, job deferral."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from app import installations as installations_module
from app.atlassian.forge_token import Invocation
from app.crypto import SecretBox
from app.errors import ConfigError, Defer, PermanentFailure
from app.installations import (
    InstallationStore,
    Invoked,
    Saved,
    SystemToken,
    forge_tenant,
    require_system_token,
)
from app.settings import Settings
from tests.forge.conftest import (
    API_BASE_URL,
    APP_ID,
    CLOUD_ID,
    INSTALLATION_ID,
    INSTALLATION_UUID,
    system_token,
)


def invocation(installation_id: str = INSTALLATION_ID, cloud_id: str = CLOUD_ID) -> Invocation:
    return Invocation(
        installation_id=installation_id,
        app_id=APP_ID,
        api_base_url=API_BASE_URL,
        cloud_id=cloud_id,
        environment_type="PRODUCTION",
        environment_id=None,
        app_version="2.0.0",
        module_key="ep-events",
        license_active=True,
        ic_label=None,
        expires_at=int(time.time()) + 25,
        claims={},
    )


@pytest.fixture
def store(redis: Redis, settings: Settings) -> InstallationStore:
    return InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)


async def test_tenant_is_forge_cloud_id_unless_connect_knows_the_installation(
    store: InstallationStore, redis: Redis, settings: Settings
) -> None:
    assert await store.resolve_tenant(INSTALLATION_ID, CLOUD_ID) == forge_tenant(CLOUD_ID)
    assert forge_tenant(CLOUD_ID) == f"forge:{CLOUD_ID}"
    await redis.set(f"{settings.redis_prefix}tenant:installation:{INSTALLATION_ID}", "ck-1")
    assert await store.resolve_tenant(INSTALLATION_ID, CLOUD_ID) == "ck-1"
    assert await store.resolve_tenant(INSTALLATION_UUID, CLOUD_ID) == "ck-1"


async def test_a_bare_uuid_mapping_is_found_too(
    store: InstallationStore, redis: Redis, settings: Settings
) -> None:
    await redis.set(f"{settings.redis_prefix}tenant:installation:{INSTALLATION_UUID}", "ck-2")
    assert await store.resolve_tenant(INSTALLATION_ID, CLOUD_ID) == "ck-2"


async def test_system_token_is_encrypted_at_rest_and_expires_with_the_token(
    store: InstallationStore, redis: Redis, settings: Settings
) -> None:
    exp = int(time.time()) + 7200
    token = system_token(exp)
    saved = await store.save_system_token(INSTALLATION_ID, SystemToken(token, API_BASE_URL, exp))
    assert saved == Saved.STORED
    raw = await redis.get(f"{settings.redis_prefix}forge:token:{INSTALLATION_ID}")
    assert raw is not None and token.encode() not in raw
    assert API_BASE_URL.encode() not in raw
    ttl = await redis.ttl(f"{settings.redis_prefix}forge:token:{INSTALLATION_ID}")
    assert 7190 <= ttl <= 7200
    assert await store.system_token(INSTALLATION_ID) == (token, API_BASE_URL, exp)
    assert await store.system_token(INSTALLATION_UUID) == (token, API_BASE_URL, exp)


async def test_expired_or_nearly_expired_tokens_are_not_handed_out(
    store: InstallationStore,
) -> None:
    now = int(time.time())
    stale = SystemToken(system_token(now - 1), API_BASE_URL, now - 1)
    assert await store.save_system_token(INSTALLATION_ID, stale) == Saved.EXPIRED
    assert await store.system_token(INSTALLATION_ID) is None
    closing = SystemToken(system_token(now + 30), API_BASE_URL, now + 30)
    assert await store.save_system_token(INSTALLATION_ID, closing) == Saved.STORED
    assert await store.system_token(INSTALLATION_ID) is None


def invoked(issued_at: int, fingerprint: str | None = None) -> Invoked:
    """The invocation a token came with: its FIT's digest, ``iat`` and ``exp``."""
    return Invoked(fingerprint or f"fit-{issued_at}", issued_at, issued_at + 25)


async def test_the_token_of_the_latest_invocation_is_held_whatever_expiry_it_claims(
    store: InstallationStore,
) -> None:
    """Ordered by the invocation token's ``iat``, never by the ``exp`` a system token claims
    unverified: a token claiming to live longer must not keep Atlassian's next one out."""
    now = int(time.time())
    long = SystemToken(system_token(now + 7000), API_BASE_URL, now + 7000)
    shorter = SystemToken(system_token(now + 3600), API_BASE_URL, now + 3600)
    assert await store.save_system_token(INSTALLATION_ID, long, invoked(now - 20)) == Saved.STORED
    assert await store.save_system_token(INSTALLATION_ID, shorter, invoked(now)) == Saved.STORED
    assert await store.system_token(INSTALLATION_ID) == shorter
    late = SystemToken(system_token(now + 7100), API_BASE_URL, now + 7100)
    # a slower delivery of an earlier invocation: the later one's token stays
    assert await store.save_system_token(INSTALLATION_ID, late, invoked(now - 10)) == Saved.OLDER
    assert await store.system_token(INSTALLATION_ID) == shorter
    same_second = SystemToken(system_token(now + 3500), API_BASE_URL, now + 3500)
    assert (
        await store.save_system_token(INSTALLATION_ID, same_second, invoked(now, "fit-other"))
        == Saved.STORED
    )
    assert await store.system_token(INSTALLATION_ID) == same_second


async def test_an_invocation_token_replayed_with_another_system_token_is_refused(
    store: InstallationStore, redis: Redis, settings: Settings
) -> None:
    now = int(time.time())
    genuine = SystemToken(system_token(now + 3600), API_BASE_URL, now + 3600)
    junk = SystemToken(system_token(now + 7200), API_BASE_URL, now + 7200)
    fit = invoked(now, "captured-fit")
    assert await store.save_system_token(INSTALLATION_ID, genuine, fit) == Saved.STORED
    assert await store.save_system_token(INSTALLATION_ID, junk, fit) == Saved.REPLAYED
    assert await store.system_token(INSTALLATION_ID) == genuine
    # the same call retried (same FIT, same token) goes through as before
    assert await store.save_system_token(INSTALLATION_ID, genuine, fit) == Saved.STORED
    # the FIT is remembered only until it expires (plus the leeway), by digest
    memory = f"{settings.redis_prefix}forge:invocation:captured-fit"
    assert 0 < await redis.ttl(memory) <= 25 + 10 + 1
    assert genuine.token.encode() not in (await redis.get(memory) or b"")


async def test_require_system_token_defers_until_a_token_arrives(
    store: InstallationStore,
) -> None:
    tenant = forge_tenant(CLOUD_ID)
    with pytest.raises(Defer) as info:
        await require_system_token(store, tenant)
    assert info.value.delay > 0 and "no valid Forge system token" in info.value.reason
    await store.register(invocation(), tenant)
    with pytest.raises(Defer):
        await require_system_token(store, tenant)
    exp = int(time.time()) + 7200
    token = SystemToken(system_token(exp), API_BASE_URL, exp)
    await store.save_system_token(INSTALLATION_ID, token)
    assert await require_system_token(store, tenant) == token


async def test_an_uninstalling_installation_fails_its_events_instead_of_deferring_them(
    store: InstallationStore,
) -> None:
    """preUninstall drops the token for good: waiting for one would defer events forever."""
    tenant = forge_tenant(CLOUD_ID)
    await store.register(invocation(), tenant)
    exp = int(time.time()) + 7200
    await store.save_system_token(
        INSTALLATION_ID, SystemToken(system_token(exp), API_BASE_URL, exp)
    )
    await store.mark_uninstalling(INSTALLATION_ID)
    got = await store.get(INSTALLATION_ID)
    assert got is not None and got.token_expires_at is None  # shown as gone, not as valid
    with pytest.raises(PermanentFailure, match="uninstalled"):
        await require_system_token(store, tenant)
    await store.register(invocation(), tenant)  # a late event or a retry: still going away
    with pytest.raises(PermanentFailure, match="uninstalled"):
        await require_system_token(store, tenant)
    await store.record_lifecycle(INSTALLATION_ID, "avi:forge:installed:app")
    with pytest.raises(Defer):  # installed again: waits for its token again
        await require_system_token(store, tenant)


async def test_registry_records_installations_events_and_lifecycle(
    store: InstallationStore,
) -> None:
    other = "ari:cloud:ecosystem::installation/0000-other"
    await store.register(invocation(), "ck-1")
    await store.register(invocation(other, "cloud-2"), forge_tenant("cloud-2"))
    await store.record_event(INSTALLATION_ID, "page.created", 0)
    await store.record_event(INSTALLATION_ID, "page.created", 2)
    await store.record_lifecycle(INSTALLATION_ID, "avi:forge:installed:app")
    await store.register(invocation(), "ck-1")  # refresh keeps first_seen and stats
    listed = await store.list()
    assert {i.installation_id for i in listed} == {INSTALLATION_ID, other}
    got = await store.get(INSTALLATION_ID)
    assert got is not None
    assert (got.tenant, got.cloud_id, got.api_base_url) == ("ck-1", CLOUD_ID, API_BASE_URL)
    assert (got.events, got.retries, got.last_retry_count) == (2, 1, 2)
    assert got.installed_at is not None and got.upgraded_at is None
    assert got.license_active is True and got.environment_type == "PRODUCTION"
    assert got.first_seen <= got.last_seen and got.status == "active"
    await store.mark_uninstalling(INSTALLATION_ID)
    got = await store.get(INSTALLATION_ID)
    assert got is not None and got.status == "uninstalling"


async def test_the_registry_is_listed_without_a_secret_key(
    store: InstallationStore, redis: Redis, settings: Settings
) -> None:
    """The dashboard and ``reactor receive`` read the registry, never a sealed token: a
    process without REACTOR_SECRET_KEY sees the installations; only the token needs the key."""
    await store.register(invocation(), forge_tenant(CLOUD_ID))
    exp = int(time.time()) + 3600
    token = SystemToken(system_token(exp), API_BASE_URL, exp)
    assert await store.save_system_token(INSTALLATION_ID, token) == Saved.STORED
    keyless = InstallationStore(redis, SecretBox([], lazy=True), settings.redis_prefix)
    assert [i.installation_id for i in await keyless.list()] == [INSTALLATION_ID]
    assert await keyless.installation_for_tenant(forge_tenant(CLOUD_ID)) == INSTALLATION_ID
    with pytest.raises(ConfigError, match="REACTOR_SECRET_KEY"):
        await keyless.system_token(INSTALLATION_ID)


async def test_a_tenant_nobody_installed_fails_at_once_instead_of_waiting_for_a_token(
    store: InstallationStore,
) -> None:
    """A clientKey with no Connect record and no Forge installation (an event stored with
    ``reactor receive --allow-unknown-tenant``): no token will come, so no endless deferral."""
    with pytest.raises(PermanentFailure, match="not installed"):
        await require_system_token(store, "never-installed-client-key")
    with pytest.raises(Defer):  # a Forge site waits for its token, as before
        await require_system_token(store, forge_tenant("cloud-without-token"))


@pytest.mark.parametrize("head_start", [0, 1, 2, 3, 4, 5])
async def test_a_token_saved_while_the_installation_is_marked_uninstalling_is_not_kept(
    redis: Redis, settings: Settings, head_start: int
) -> None:
    """An event racing the pre-uninstall hook: whichever lands first, the installation ends
    uninstalling without a token (the status check and the write are one step). Each save
    starts ``head_start`` loop turns before the hook, so the hook lands between its steps."""
    box = SecretBox(settings.secret_keys)
    # two clients: the event and the hook arrive on separate connections, as in the service
    other = Redis.from_url(settings.redis_url)
    event = InstallationStore(redis, box, settings.redis_prefix)
    hook = InstallationStore(other, box, settings.redis_prefix)
    now = int(time.time())
    kept = []
    try:
        for round_ in range(20):
            installation_id = f"ari:cloud:ecosystem::installation/race-{head_start}-{round_}"
            await event.register(invocation(installation_id), forge_tenant(f"race-{round_}"))
            first = SystemToken(system_token(now + 3600), API_BASE_URL, now + 3600)
            await event.save_system_token(installation_id, first, invoked(now - 1, "first"))

            async def uninstall(turns: int, installation_id: str = installation_id) -> None:
                for _ in range(turns):
                    await asyncio.sleep(0)
                await hook.mark_uninstalling(installation_id)

            token = SystemToken(system_token(now + 3600), API_BASE_URL, now + 3600)
            await asyncio.gather(
                event.save_system_token(installation_id, token, invoked(now, f"r{round_}")),
                uninstall(head_start),
            )
            got = await event.get(installation_id)
            assert got is not None and got.status == "uninstalling"
            if await event.system_token(installation_id) is not None or got.token_expires_at:
                kept.append(round_)
    finally:
        await other.aclose()
    assert kept == []


async def test_a_long_listing_is_read_in_batches_newest_first(
    store: InstallationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeps' tick lists up to 10,000 installations every minute: read a batch per round
    trip, in the index's order, skipping ids whose record is gone."""
    monkeypatch.setattr(installations_module, "LIST_BATCH", 2)
    ids = [f"ari:cloud:ecosystem::installation/0000-batch-{n}" for n in range(5)]
    for n, installation_id in enumerate(ids):
        await store.register(
            invocation(installation_id, f"cloud-b{n}"), forge_tenant(f"cloud-b{n}")
        )
        await asyncio.sleep(0.002)  # seen one after another
    await store.redis.delete(store._installation(ids[2]))  # a record gone, its id still listed
    listed = [i.installation_id for i in await store.list(limit=10)]
    expected = [i for i in reversed(ids) if i != ids[2]]
    assert [i for i in listed if i in ids] == expected
    assert [i.installation_id for i in await store.list(limit=3)] == listed[:2]
