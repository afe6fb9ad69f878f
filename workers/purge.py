"""The workers' daily purge of sites uninstalled longer than the retention.

Atlassian tells the app a site uninstalled it (Connect `uninstalled`, Forge's pre-uninstall
hook); the records keep no secret or token from then on, but they and the site's reconciliation
state stayed for ever. Once ``REACTOR_UNINSTALLED_RETENTION_SECONDS`` have passed since (with
no reinstall meanwhile, and for Forge no call since), the daily purge deletes the tenant record,
its index entry and installation mapping (:meth:`app.tenants.TenantStore.purge_uninstalled`),
the Forge installation's record and its tenant mapping
(:meth:`app.installations.InstallationStore.purge_uninstalled`), and the reconciliation state
of each site no installation serves any more (:meth:`app.reconcile_state.ReconcileState.forget`),
the app accounts learned on it and its fair-share weight, if one was set.
Event records expire on their own; their indexes (``events``, ``dlq``, ``failing``) are
trimmed as jobs end, and by the same daily run (:func:`trim_indexes`) however few end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis

from app.crypto import SecretBox
from app.eventlog import EventLog
from app.installations import InstallationStore, is_forge_tenant
from app.reconcile_state import ReconcileState
from app.settings import Settings
from app.tenants import TenantStore

log = structlog.get_logger("reactor.purge")


async def purge_uninstalled(
    redis: Redis, settings: Settings, *, clock: Callable[[], float] = time.time
) -> list[str]:
    """Delete what is kept of sites uninstalled before the retention; their clientKeys."""
    if settings.uninstalled_retention_seconds <= 0:
        return []
    cutoff = clock() - settings.uninstalled_retention_seconds
    purged = await TenantStore(redis, settings).purge_uninstalled(cutoff)
    installations = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    # a Forge-only site's state goes with its last installation (a Connect site's with it)
    freed = await installations.purge_uninstalled(cutoff)
    purged += [tenant for tenant in freed if is_forge_tenant(tenant)]
    state = ReconcileState(redis, settings.redis_prefix)
    prefix = settings.redis_prefix
    for client_key in purged:
        await state.forget(client_key)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.delete(f"{prefix}app-accounts:{client_key}")
            pipe.hdel(f"{prefix}budget:weights", client_key)
            await pipe.execute()
    if purged:
        log.info("uninstalled sites deleted", count=len(purged), tenants=purged[:20])
    return purged


async def trim_indexes(
    redis: Redis, settings: Settings, *, clock: Callable[[], float] = time.time
) -> int:
    """Drop index entries older than their records can be: ``events`` and ``failing`` past the
    event retention, ``dlq`` past the dead-letter one (ends of jobs trim them too, but while no
    job ends they only grow). How many entries went."""
    log_store = EventLog(redis, settings)
    now_ms = int(clock() * 1000)
    keys = log_store.keys
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(keys.events, "-inf", now_ms - log_store.retention * 1000)
        pipe.zremrangebyscore(log_store.failing, "-inf", now_ms - log_store.retention * 1000)
        pipe.zremrangebyscore(keys.dlq, "-inf", now_ms - log_store.dead_retention * 1000)
        removed = await pipe.execute()
    return sum(int(n) for n in removed)


async def purge(ctx: dict[str, Any]) -> int:
    """The workers' daily cron job: :func:`trim_indexes`, and :func:`purge_uninstalled` unless
    uninstalled sites are kept for ever; how many sites it deleted."""
    redis, settings = ctx["redis"], ctx["settings"]
    trimmed = await trim_indexes(redis, settings)
    if trimmed:
        log.info("index entries past retention dropped", count=trimmed)
    return len(await purge_uninstalled(redis, settings))
