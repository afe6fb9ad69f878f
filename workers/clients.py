"""Reactions in the worker: a Confluence client per event, and the reactor's start and stop.

:class:`TenantClients` turns an event's tenant into an authenticated, budgeted client: a Connect
tenant (from the tenant store) signs each call with its shared secret; a Forge tenant uses the
installation's app system token (the job is deferred while none is valid). :func:`start` runs in
the worker's start-up: when reactions are configured it owns one pooled HTTP client and
installs the :class:`~workers.reactor.Reactor` as the job layer's dispatcher.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import httpx

from app.atlassian.events import Event
from app.budget.hook import BudgetHook, Observation, Priority, Reservation
from app.budget.redis_budget import RedisBudget
from app.confluence.client import ConfluenceClient, new_http_client
from app.confluence.site import Site
from app.crypto import SecretBox
from app.errors import Defer, PermanentFailure
from app.eventlog import Writes
from app.installations import InstallationStore, is_forge_tenant, require_system_token
from app.settings import Settings
from app.tenants import TenantStore
from workers.client_ops import ClientOps
from workers.dispatch import JobContext, LatestOnly
from workers.effects import LoopGuardPolicy
from workers.reactor import Reactor, ReactorOptions
from workers.routing import Router

JOBS_PER_POOL = 5
# A disabled site's jobs are looked at again this often, and given up (dead-lettered, so an
# operator can replay them) once their event is this old, or sooner: see wait_bound.
DISABLED_DEFER_SECONDS = 600.0
DISABLED_WAIT_SECONDS = 7 * 24 * 3600.0
# Before the records of the events queued behind a waiting head expire (they keep the event
# retention from their arrival; only the head's is renewed while it waits).
RETENTION_MARGIN_SECONDS = 3600.0


def wait_bound(limit: float, settings: Settings) -> float:
    """How long a head may wait for its site: ``limit``, ended early enough that the events
    behind it are still kept when it gives up (each then waits, or runs, in its turn)."""
    return max(60.0, min(limit, settings.event_retention_seconds - RETENTION_MARGIN_SECONDS))


class TenantClients:
    """``await clients(event, job)`` -> the reactions' client for the event's tenant.

    ``http`` may be several pooled HTTP clients: each event's calls go through the next one in
    turn. httpcore checks every connection of a pool on each request and each response close
    (an idle one by polling its socket), so a few small pools cost less per call than one big
    pool with as many connections (see :func:`http_shards`).
    """

    def __init__(
        self,
        http: httpx.AsyncClient | Sequence[httpx.AsyncClient],
        settings: Settings,
        tenants: TenantStore,
        installations: InstallationStore,
        budget: BudgetHook,
    ) -> None:
        pools = [http] if isinstance(http, httpx.AsyncClient) else list(http)
        self._pools = itertools.cycle(pools)
        self.settings = settings
        self.tenants = tenants
        self.installations = installations
        self.budget = budget

    async def site(self, tenant_id: str) -> Site:
        """How to call the tenant's site, read when the job starts.

        A disabled site's jobs wait (they run once it is enabled again, or end as dead letters
        after :data:`DISABLED_WAIT_SECONDS`). An uninstalled Connect tenant whose site still
        has the linked Forge installation is served with that installation's system token.
        """
        tenant = None if is_forge_tenant(tenant_id) else await self.tenants.get(tenant_id)
        if tenant is not None and tenant.status == "disabled":
            raise Defer(
                DISABLED_DEFER_SECONDS,
                f"the app is disabled on this site (tenant {tenant_id})",
                give_up_after=wait_bound(DISABLED_WAIT_SECONDS, self.settings),
            )
        if tenant is not None and tenant.active:
            return Site.connect(
                tenant=tenant_id,
                base_url=tenant.base_url,
                app_key=self.settings.app_key,
                shared_secret=tenant.shared_secret,
            )
        if tenant is not None and not await self.installations.installation_for_tenant(tenant_id):
            raise PermanentFailure(f"tenant {tenant_id} is {tenant.status}")
        try:
            token = await require_system_token(self.installations, tenant_id)
        except Defer as wait:
            if wait.give_up_after is not None:
                wait.give_up_after = wait_bound(wait.give_up_after, self.settings)
            raise
        installations = self.installations

        async def provider() -> str:
            return (await require_system_token(installations, tenant_id)).token

        return Site.forge(tenant=tenant_id, api_base_url=token.api_base_url, token=provider)

    async def __call__(self, event: Event, job: JobContext) -> ClientOps:
        site = await self.site(event.tenant)
        budget: BudgetHook = self.budget
        if job.after is not None and isinstance(budget, RedisBudget):
            budget = SettleAtEnd(budget, job.after)
        http = next(self._pools)
        client = ConfluenceClient(http, site, budget, event_id=event.id, logger=job.confluence_log)
        return ClientOps(client)


class SettleAtEnd:
    """One run's budget: a plain successful call is settled with the end of the run (in the
    job layer's last round trip); anything the other processes must know at once (a 429, a
    pause, a low remainder, an error) is settled straight away."""

    def __init__(self, budget: RedisBudget, after: list[Writes]) -> None:
        self.budget = budget
        self.after = after

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        return await self.budget.reserve(tenant, cost, priority)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        later = self.budget.settle_later(reservation, observation)
        if later is None:
            await self.budget.settle(reservation, observation)
        else:
            self.after.append(later)


def job_tenants(redis: Any, settings: Settings) -> TenantStore:
    """The tenant store of the worker's jobs: every job reads its tenant afresh, so a
    reinstall's new secret is used at once (a cached old one gets a 401, and a 401 ends a job
    as a dead letter)."""
    return TenantStore(redis, settings, cache_seconds=0)


def reactor_options(settings: Settings) -> ReactorOptions:
    return ReactorOptions(
        dry_run=settings.dry_run,
        app_accounts=frozenset(settings.app_account_ids),
        loop_guard=LoopGuardPolicy(
            limit=settings.loop_guard_limit, window_seconds=settings.loop_guard_window_seconds
        ),
    )


async def start(ctx: dict[str, Any]) -> None:
    """Install the reactor as dispatcher when ``ctx["reactions"]`` holds any reaction."""
    router: Router | None = ctx.get("reactions")
    if router is None or len(router) == 0:
        return
    settings: Settings = ctx["settings"]
    redis = ctx["redis"]
    http = http_shards(settings.worker_concurrency)
    ctx["reactions_http"] = http
    budget: BudgetHook = ctx.get("budget") or RedisBudget(redis, settings)
    installations = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    clients = TenantClients(http, settings, job_tenants(redis, settings), installations, budget)
    ctx["dispatch"] = Reactor(router, clients, reactor_options(settings))
    configured: LatestOnly | None = ctx.get("latest_only")
    if not any(reg.latest_only for reg in router):
        return  # no reaction supersedes: only the settings' types may (or none)

    def latest_only(older: Event, newer_type: str) -> bool:
        by_settings = configured is not None and configured(older, newer_type)
        return by_settings or router.latest_only(older, newer_type)

    ctx["latest_only"] = latest_only


def http_shards(concurrency: int) -> list[httpx.AsyncClient]:
    """Pooled HTTP clients for ``concurrency`` jobs: one per :data:`JOBS_PER_POOL` jobs, each
    keeping a few more idle connections than its share of jobs needs."""
    count = max(1, math.ceil(concurrency / JOBS_PER_POOL))
    share = math.ceil(concurrency / count)
    return [new_http_client(max_keepalive_connections=share + 3) for _ in range(count)]


async def stop(ctx: dict[str, Any]) -> None:
    for http in ctx.pop("reactions_http", []):
        await http.aclose()
