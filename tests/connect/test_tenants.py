"""The tenant store on a real Redis: encryption at rest, rotation, cache, status, index."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.asyncio import Redis

from app.crypto import SecretBox
from app.errors import UpstreamUnavailable
from app.settings import Settings
from app.tenants import Tenant, TenantStore

SECRET = "shared-secret-" + "q" * 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tenant(client_key: str = "ck-1", secret: str = SECRET, **kw: object) -> Tenant:
    return Tenant(
        client_key=client_key,
        shared_secret=secret,
        base_url="https://example.atlassian.net/wiki",
        **kw,  # type: ignore[arg-type]
    )


async def test_secret_is_encrypted_at_rest_and_keys_are_prefixed(
    redis: Redis, settings: Settings
) -> None:
    store = TenantStore(redis, settings)
    before = set(await redis.keys("*"))  # other suites' arq keys may share the database
    await store.upsert(tenant(installation_id="ari:cloud:ecosystem::installation/42"))
    keys = sorted(k.decode() for k in set(await redis.keys("*")) - before)
    assert keys and all(k.startswith(settings.redis_prefix) for k in keys)
    raw = await redis.hgetall(f"{settings.redis_prefix}tenant:client:ck-1")  # type: ignore[misc]
    assert all(SECRET.encode() not in v for v in raw.values())
    assert SecretBox(settings.secret_keys).decrypt(raw[b"secret"]) == SECRET
    fresh = TenantStore(redis, settings)
    got = await fresh.get("ck-1")
    assert got is not None and got.shared_secret == SECRET
    assert got.status == "installed" and got.active
    assert SECRET not in repr(got) and "shared_secret" not in got.public_dict()


async def test_key_rotation_decrypts_with_any_key(redis: Redis, settings: Settings) -> None:
    await TenantStore(redis, settings).upsert(tenant())
    newer = Fernet.generate_key().decode()
    rotated = settings.model_copy(
        update={"secret_key": SecretStr(f"{newer},{settings.secret_keys[0]}")}
    )
    rotated_store = TenantStore(redis, rotated)
    got = await rotated_store.get("ck-1")
    assert got is not None and got.shared_secret == SECRET
    await rotated_store.upsert(tenant(secret=SECRET + "-2"))
    raw = await redis.hget(f"{settings.redis_prefix}tenant:client:ck-1", "secret")  # type: ignore[misc]
    assert SecretBox([newer]).decrypt(raw) == SECRET + "-2"
    only_new = settings.model_copy(update={"secret_key": SecretStr(newer)})
    assert (await TenantStore(redis, only_new).get("ck-1")) is not None


async def test_unreadable_secret_is_503_not_500(redis: Redis, settings: Settings) -> None:
    await TenantStore(redis, settings).upsert(tenant())
    other = settings.model_copy(update={"secret_key": SecretStr(Fernet.generate_key().decode())})
    with pytest.raises(UpstreamUnavailable) as info:
        await TenantStore(redis, other).get("ck-1")
    assert info.value.status == 503 and info.value.code == "tenant_secret_unreadable"
    assert SECRET not in str(info.value)


async def test_cache_serves_without_redis_until_it_expires(
    redis: Redis, settings: Settings
) -> None:
    clock = Clock()
    store = TenantStore(redis, settings, cache_seconds=10, clock=clock)
    await store.upsert(tenant())
    await redis.delete(f"{settings.redis_prefix}tenant:client:ck-1")
    assert (await store.get("ck-1")) is not None
    clock.now += 11
    assert (await store.get("ck-1")) is None


async def test_an_expired_tenant_is_read_once_for_all_requests_waiting_on_it(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TenantStore(redis, settings)
    await TenantStore(redis, settings).upsert(tenant())
    reads = 0
    hgetall = redis.hgetall

    async def counted(key: str) -> Any:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)  # slow enough for every request to arrive meanwhile
        return await hgetall(key)  # type: ignore[misc]

    monkeypatch.setattr(redis, "hgetall", counted)
    found = await asyncio.gather(*(store.get("ck-1") for _ in range(50)))
    assert reads == 1
    assert all(t is not None and t.shared_secret == SECRET for t in found)


async def test_a_status_written_during_a_read_is_not_undone_by_it(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TenantStore(redis, settings)
    await TenantStore(redis, settings).upsert(tenant())
    release = asyncio.Event()
    hgetall = redis.hgetall

    async def held(key: str) -> Any:
        raw = await hgetall(key)  # type: ignore[misc]
        await release.wait()  # read before the uninstall, answered after it
        return raw

    monkeypatch.setattr(redis, "hgetall", held)
    reading = asyncio.ensure_future(store.get("ck-1"))
    await asyncio.sleep(0.05)
    monkeypatch.setattr(redis, "hgetall", hgetall)
    await store.mark_status("ck-1", "uninstalled")
    release.set()
    stale = await reading
    assert stale is not None and stale.status == "installed", "what it read, before the write"
    fresh = await store.get("ck-1")
    assert fresh is not None and fresh.status == "uninstalled", "the stale read was not cached"


async def test_reinstall_rotates_secret_keeps_install_time(
    redis: Redis, settings: Settings
) -> None:
    store = TenantStore(redis, settings)
    first = await store.upsert(tenant(), now=100.0)
    again = await store.upsert(tenant(secret="rotated-" + "z" * 30), now=200.0)
    assert (first.installed_at, again.installed_at, again.updated_at) == (100.0, 100.0, 200.0)
    got = await TenantStore(redis, settings).get("ck-1")
    assert got is not None and got.shared_secret == "rotated-" + "z" * 30
    await store.mark_status("ck-1", "uninstalled", now=300.0)
    back = await store.upsert(tenant(), now=400.0)
    assert (back.status, back.installed_at) == ("installed", 400.0)


async def test_status_changes_and_listing(redis: Redis, settings: Settings) -> None:
    store = TenantStore(redis, settings)
    await store.upsert(tenant("ck-b"))
    await store.upsert(tenant("ck-a"))
    assert await store.mark_status("nobody", "disabled") is None
    disabled = await store.mark_status("ck-b", "disabled")
    assert disabled is not None and not disabled.active
    other_process = TenantStore(redis, settings)
    listed = await other_process.list()
    assert [(t.client_key, t.status) for t in listed] == [
        ("ck-a", "installed"),
        ("ck-b", "disabled"),
    ]
    await store.mark_status("ck-b", "uninstalled")
    got = await TenantStore(redis, settings).get("ck-b")
    # The record is kept for the operators; the secret goes (a reinstall brings a new one).
    assert got is not None and got.status == "uninstalled" and got.shared_secret == ""
    assert not await redis.hexists(f"{settings.redis_prefix}tenant:client:ck-b", "secret")


async def test_lifecycle_callbacks_apply_in_the_order_they_were_signed(
    redis: Redis, settings: Settings
) -> None:
    """A late retry or a replay of an older callback changes nothing: it cannot bring back an
    old secret, uninstall a reinstalled site or re-enable a disabled one."""
    store = TenantStore(redis, settings)
    await store.upsert(tenant(secret="first-" + "a" * 30), issued_at=1000)
    assert await store.upsert(tenant(secret="second-" + "b" * 30), issued_at=1030) is not None
    assert await store.upsert(tenant(secret="first-" + "a" * 30), issued_at=1000) is None
    assert await store.mark_status("ck-1", "uninstalled", issued_at=1010) is None
    fresh = TenantStore(redis, settings)
    got = await fresh.get("ck-1")
    assert got is not None and (got.status, got.shared_secret) == (
        "installed",
        "second-" + "b" * 30,
    )
    assert await store.mark_status("ck-1", "disabled", issued_at=1040) is not None
    assert await store.mark_status("ck-1", "enabled", issued_at=1035) is None
    assert await store.upsert(tenant(secret="first-" + "a" * 30), issued_at=1000) is None
    got = await TenantStore(redis, settings).get("ck-1")
    assert got is not None and (got.status, got.shared_secret) == ("disabled", "second-" + "b" * 30)


async def test_an_installed_callback_leaves_a_disabled_site_disabled(
    redis: Redis, settings: Settings
) -> None:
    """Atlassian sends ``installed`` again on upgrades: the site stays as the admin left it."""
    store = TenantStore(redis, settings)
    await store.upsert(tenant(), issued_at=1000)
    await store.mark_status("ck-1", "disabled", issued_at=1010)
    upgraded = await store.upsert(tenant(secret="upgraded-" + "c" * 30), issued_at=1020)
    assert upgraded is not None and upgraded.status == "disabled"
    assert upgraded.shared_secret == "upgraded-" + "c" * 30
    await store.mark_status("ck-1", "enabled", issued_at=1030)
    await store.mark_status("ck-1", "uninstalled", issued_at=1040)
    back = await store.upsert(tenant(), issued_at=1050)
    assert back is not None and back.status == "installed"


async def test_by_installation_id(redis: Redis, settings: Settings) -> None:
    store = TenantStore(redis, settings)
    install = "ari:cloud:ecosystem::installation/7c0d"
    await store.upsert(tenant("ck-forge", installation_id=install))
    assert await redis.get(f"{settings.redis_prefix}tenant:installation:{install}") == b"ck-forge"
    found = await TenantStore(redis, settings).by_installation_id(install)
    assert found is not None and found.client_key == "ck-forge"
    assert await store.by_installation_id("ari:cloud:ecosystem::installation/none") is None


async def test_redis_down_is_503(settings: Settings) -> None:
    from app import redis as redis_conn
    from app.embedded_redis import free_port

    dead = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0")
    store = TenantStore(dead, settings)
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await store.get("ck-1")
        assert info.value.code == "tenant_store_unavailable"
    finally:
        await dead.aclose()


async def test_public_listing_needs_no_secret_key(redis: Redis, settings: Settings) -> None:
    await TenantStore(redis, settings).upsert(tenant("ck-pub", display_url="https://wiki.example"))
    keyless = settings.model_copy(update={"secret_key": None})
    rows = await TenantStore(redis, keyless).list_public()
    assert [(r["client_key"], r["display_url"], r["status"]) for r in rows] == [
        ("ck-pub", "https://wiki.example", "installed")
    ]
    assert all("shared_secret" not in r and SECRET not in str(r) for r in rows)


async def test_lifecycle_works_when_the_old_secret_is_unreadable(
    redis: Redis, settings: Settings
) -> None:
    await TenantStore(redis, settings).upsert(tenant(), now=100.0)
    retired = settings.model_copy(update={"secret_key": SecretStr(Fernet.generate_key().decode())})
    store = TenantStore(redis, retired)
    gone = await store.mark_status("ck-1", "uninstalled", now=150.0)
    assert gone is not None and gone.status == "uninstalled" and gone.shared_secret == ""
    again = await store.upsert(tenant(secret="after-rotation-" + "r" * 20), now=200.0)
    assert again.installed_at == 200.0
    got = await TenantStore(redis, retired).get("ck-1")
    assert got is not None and got.shared_secret == "after-rotation-" + "r" * 20
