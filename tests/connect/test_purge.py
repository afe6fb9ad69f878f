"""Sites uninstalled longer than REACTOR_UNINSTALLED_RETENTION_SECONDS are deleted by the
workers' daily purge: record, index entry, installation mapping and reconciliation state."""

from __future__ import annotations

from redis.asyncio import Redis

from app.crypto import SecretBox
from app.eventlog import EventLog
from app.installations import InstallationStore, forge_tenant
from app.reconcile_state import Progress, ReconcileState
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.forge.test_installations import invocation
from workers.purge import purge_uninstalled, trim_indexes

DAY = 24 * 3600.0
NOW = 1_800_000_000.0


def site(client_key: str) -> Tenant:
    return Tenant(
        client_key=client_key,
        shared_secret="s" * 40,
        base_url=f"https://{client_key}.atlassian.net/wiki",
        installation_id=f"ari:cloud:ecosystem::installation/{client_key}",
    )


async def _installed(store: TenantStore, client_key: str, at: float) -> None:
    await store.upsert(site(client_key), now=at)


async def _swept(redis: Redis, settings: Settings, client_key: str) -> ReconcileState:
    state = ReconcileState(redis, settings.redis_prefix)
    await state.set_watermark(client_key, 1)
    await state.save_progress("auto", client_key, Progress(since=1, started=2))
    await state.turn_failed(client_key, 3, 60)
    return state


async def test_a_site_uninstalled_past_the_retention_is_deleted_and_no_other(
    redis: Redis, settings: Settings
) -> None:
    settings = settings.model_copy(update={"uninstalled_retention_seconds": int(30 * DAY)})
    store = TenantStore(redis, settings)
    for client_key in ("gone", "recent", "live", "back"):
        await _installed(store, client_key, NOW - 90 * DAY)
        await _swept(redis, settings, client_key)
    await store.mark_status("gone", "uninstalled", now=NOW - 31 * DAY)
    await store.mark_status("recent", "uninstalled", now=NOW - 29 * DAY)
    await store.mark_status("back", "uninstalled", now=NOW - 60 * DAY)
    await _installed(store, "back", NOW - 40 * DAY)  # installed again since
    assert await purge_uninstalled(redis, settings, clock=lambda: NOW) == ["gone"]
    keys = store.keys
    assert await redis.exists(keys.tenant("gone")) == 0
    assert not await redis.sismember(keys.index, "gone")  # type: ignore[misc]
    assert await redis.exists(keys.installation(site("gone").installation_id or "")) == 0
    state = ReconcileState(redis, settings.redis_prefix)
    assert await state.watermark("gone") is None
    assert await state.progress("auto", "gone") is None
    assert await state.failures("gone") is None
    for kept in ("recent", "live", "back"):
        assert await store.get_public(kept) is not None, kept
        assert await state.watermark(kept) == 1, kept
        assert await redis.exists(keys.installation(site(kept).installation_id or "")) == 1
    assert [t.client_key for t in await store.list()] == ["back", "live", "recent"]
    assert await purge_uninstalled(redis, settings, clock=lambda: NOW) == []


async def test_a_purged_site_s_app_accounts_and_weight_go_with_it(
    redis: Redis, settings: Settings
) -> None:
    settings = settings.model_copy(update={"uninstalled_retention_seconds": int(30 * DAY)})
    store, prefix = TenantStore(redis, settings), settings.redis_prefix
    for client_key in ("gone", "live"):
        await _installed(store, client_key, NOW - 90 * DAY)
        await redis.sadd(f"{prefix}app-accounts:{client_key}", f"app-{client_key}")
        await redis.hset(f"{prefix}budget:weights", client_key, "2")
    await store.mark_status("gone", "uninstalled", now=NOW - 31 * DAY)
    assert await purge_uninstalled(redis, settings, clock=lambda: NOW) == ["gone"]
    assert await redis.exists(f"{prefix}app-accounts:gone") == 0
    assert await redis.hget(f"{prefix}budget:weights", "gone") is None
    assert await redis.exists(f"{prefix}app-accounts:live") == 1
    assert await redis.hget(f"{prefix}budget:weights", "live") == b"2"


async def test_the_daily_run_trims_indexes_past_retention_however_few_jobs_end(
    redis: Redis, settings: Settings
) -> None:
    """The events, failing and dead-letter indexes are trimmed as jobs end; while none ends
    (every line blocked, workers down) only the daily run keeps them from growing."""
    log = EventLog(redis, settings)
    now_ms = int(NOW * 1000)
    old_event = now_ms - (log.retention + 60) * 1000
    old_dead = now_ms - (log.dead_retention + 60) * 1000
    await redis.zadd(log.keys.events, {"ev_old": old_event, "ev_new": now_ms})
    await redis.zadd(log.failing, {"ev_old": old_event, "ev_new": now_ms})
    await redis.zadd(log.keys.dlq, {"ev_dead_old": old_dead, "ev_dead": old_event})
    assert await trim_indexes(redis, settings, clock=lambda: NOW) == 3
    assert await redis.zrange(log.keys.events, 0, -1) == [b"ev_new"]
    assert await redis.zrange(log.failing, 0, -1) == [b"ev_new"]
    assert await redis.zrange(log.keys.dlq, 0, -1) == [b"ev_dead"]  # dead letters keep longer


async def test_a_retention_of_zero_keeps_uninstalled_sites_for_ever(
    redis: Redis, settings: Settings
) -> None:
    settings = settings.model_copy(update={"uninstalled_retention_seconds": 0})
    store = TenantStore(redis, settings)
    await _installed(store, "old", NOW - 900 * DAY)
    await store.mark_status("old", "uninstalled", now=NOW - 800 * DAY)
    assert await purge_uninstalled(redis, settings, clock=lambda: NOW) == []
    assert await store.get_public("old") is not None


async def test_a_reinstall_racing_the_purge_is_kept(redis: Redis, settings: Settings) -> None:
    """The purge reads the list, then deletes each site in a script that checks again: a site
    installed again in between keeps its new record."""
    settings = settings.model_copy(update={"uninstalled_retention_seconds": int(30 * DAY)})
    store = TenantStore(redis, settings)
    await _installed(store, "race", NOW - 90 * DAY)
    await store.mark_status("race", "uninstalled", now=NOW - 60 * DAY)
    listed = store.list_public

    async def reinstalled_meanwhile() -> list[dict[str, object]]:
        rows = await listed()
        await _installed(store, "race", NOW)
        return rows

    store.list_public = reinstalled_meanwhile  # type: ignore[method-assign]
    assert await store.purge_uninstalled(NOW - 30 * DAY) == []
    got = await TenantStore(redis, settings).get("race")
    assert got is not None and got.status == "installed"


async def test_a_forge_installation_uninstalled_past_the_retention_is_deleted(
    redis: Redis, settings: Settings
) -> None:
    """Its record, token and tenant mapping go; the site's reconciliation state goes only when
    no other installation serves the site (a reinstall on the same site keeps it)."""
    settings = settings.model_copy(update={"uninstalled_retention_seconds": int(30 * DAY)})
    then = InstallationStore(
        redis, SecretBox(settings.secret_keys), settings.redis_prefix, clock=lambda: NOW - 60 * DAY
    )
    ari = "ari:cloud:ecosystem::installation/"
    gone, old, new, live = (f"{ari}{name}" for name in ("gone", "old", "new", "live"))
    await then.register(invocation(gone, "cloud-gone"), forge_tenant("cloud-gone"))
    await then.register(invocation(old, "cloud-same"), forge_tenant("cloud-same"))
    await then.register(invocation(new, "cloud-same"), forge_tenant("cloud-same"))  # reinstalled
    await then.register(invocation(live, "cloud-live"), forge_tenant("cloud-live"))
    await then.mark_uninstalling(gone)
    await then.mark_uninstalling(old)
    for cloud in ("cloud-gone", "cloud-same", "cloud-live"):
        await _swept(redis, settings, forge_tenant(cloud))
    assert await purge_uninstalled(redis, settings, clock=lambda: NOW) == [
        forge_tenant("cloud-gone")
    ]
    store = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    assert sorted(i.installation_id for i in await store.list()) == [live, new]
    assert await store.installation_for_tenant(forge_tenant("cloud-gone")) is None
    assert await store.installation_for_tenant(forge_tenant("cloud-same")) == new
    state = ReconcileState(redis, settings.redis_prefix)
    assert await state.watermark(forge_tenant("cloud-gone")) is None
    assert await state.watermark(forge_tenant("cloud-same")) == 1
    assert await state.watermark(forge_tenant("cloud-live")) == 1
