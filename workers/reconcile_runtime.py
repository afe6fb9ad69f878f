"""Running sweeps: which tenants to sweep, their clients, the worker's cron tick.

Connect tenants that are installed or enabled and Forge installations known only through Forge
(``forge:<cloudId>``; a Forge installation linked to a Connect install is swept as that tenant)
are swept. A tenant is due when its previous sweep is unfinished or ended
``REACTOR_RECONCILE_INTERVAL_SECONDS`` ago, unless its last turns failed (then it waits a
minute after the first failure, doubling up to an hour); the first sweep of a tenant starts at
its install, at most one dedupe window back. Its trash is listed on its own cadence
(``REACTOR_RECONCILE_TRASH_INTERVAL_SECONDS``) after a completed sweep or when only the
listing is due. The worker runs :func:`tick` every minute (not in burst mode); it sweeps a few
tenants at a time, most urgent first, each under its own lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis

from app.budget.hook import BudgetHook, Priority
from app.budget.redis_budget import RedisBudget
from app.confluence.client import new_http_client
from app.crypto import SecretBox
from app.installations import STATUS_ACTIVE, InstallationStore, is_forge_tenant
from app.queue import EventQueue
from app.reconcile_plan import FAILURE_WAIT_MOST_SECONDS, failure_wait_seconds, trash_rank
from app.reconcile_state import ReconcileState
from app.settings import Settings
from app.tenants import ACTIVE_STATUSES, TenantStore
from workers.clients import TenantClients
from workers.reconcile import Progressed, SweepClient, Sweeper, SweepReport, Target, TrashReport

log = structlog.get_logger("reactor.reconcile")
# The tick runs every minute; it starts no sweep after this long, so ticks rarely overlap.
TICK_SECONDS = 45.0
# Tenants a tick sweeps at the same time (each a different site; all share the points budget).
SWEEPS_AT_ONCE = 4


@dataclass(frozen=True, slots=True)
class Turn:
    """A due tenant: its CQL sweep, its trash listing, or both (the sweep first)."""

    target: Target
    sweep: bool
    trash: bool
    rank: tuple[int, int]  # lowest first: due sweeps by urgency, then listings only


@dataclass
class Runtime:
    """A sweeper and the stores it reads targets from, sharing one HTTP client."""

    sweeper: Sweeper
    tenants: TenantStore
    installations: InstallationStore
    settings: Settings
    clock: Callable[[], float]

    async def targets(self) -> list[Target]:
        """Every tenant and Forge-only installation that may be swept now."""
        now_ms = int(self.clock() * 1000)
        floor = now_ms - self.settings.dedupe_window_seconds * 1000
        found: dict[str, Target] = {}
        connect: dict[str, int] = {}  # every Connect tenant: installed at (ms), or 0 if active
        for row in await self.tenants.list_public():
            installed = int(float(row.get("installed_at") or 0) * 1000)
            key = str(row["client_key"])
            if row.get("status") in ACTIVE_STATUSES:
                found[key] = Target(key, max(floor, installed), installed)
            else:
                connect[key] = installed
        for item in await self.installations.list(limit=10_000):
            # Forge-only sites, and sites whose Connect install is gone but whose linked
            # installation serves them still (under the clientKey); not a disabled one.
            if item.status != STATUS_ACTIVE or item.tenant in found:
                continue
            if is_forge_tenant(item.tenant) or await self._uninstalled(item.tenant):
                installed = (item.installed_at or item.first_seen) * 1000
                found[item.tenant] = Target(item.tenant, max(floor, installed), installed)
        return list(found.values())

    async def _uninstalled(self, client_key: str) -> bool:
        tenant = await self.tenants.get_public(client_key)
        return tenant is not None and tenant.status == "uninstalled"

    async def due(self, target: Target) -> bool:
        return await self.urgency(target) is not None

    async def urgency(self, target: Target) -> int | None:
        """None when not due; else a sort key, lowest first: unfinished, never swept, oldest."""
        state = self.sweeper.state
        if await state.progress("auto", target.tenant) is not None:
            return -1
        watermark = await state.watermark(target.tenant)
        if watermark is None:
            return 0
        interval_ms = self.settings.reconcile_interval_seconds * 1000
        return watermark if self.clock() * 1000 - watermark >= interval_ms else None

    async def trash_urgency(self, target: Target) -> int | None:
        """None when its trash listing is not due; else a sort key, lowest first."""
        state = self.sweeper.state
        under_way = await state.trash_progress(target.tenant) is not None
        at = None if under_way else await state.trash_at(target.tenant)
        interval = self.settings.reconcile_trash_interval_seconds
        return trash_rank(interval, int(self.clock() * 1000), at, under_way)

    async def turn(self, target: Target) -> Turn | None:
        """What is due for the target now; None when nothing is, or while it waits after
        failed turns (:func:`~app.reconcile_plan.failure_wait_seconds`)."""
        failed = await self.sweeper.state.failures(target.tenant)
        if failed is not None:
            count, at_ms = failed
            if self.clock() * 1000 < at_ms + failure_wait_seconds(count) * 1000:
                return None
        sweep, trash = await self.urgency(target), await self.trash_urgency(target)
        if sweep is not None:
            return Turn(target, True, trash is not None, (0, sweep))
        if trash is not None:
            return Turn(target, False, True, (1, trash))
        return None

    async def turns(self) -> list[Turn]:
        """Every due tenant, most urgent first: sweeps before trash listings alone."""
        found = [await self.turn(t) for t in await self.targets()]
        return sorted((t for t in found if t is not None), key=lambda t: t.rank)

    async def due_targets(self) -> list[Target]:
        """The targets due now (a sweep or a trash listing), most urgent first."""
        return [turn.target for turn in await self.turns()]


@contextlib.asynccontextmanager
async def runtime(
    redis: Redis,
    settings: Settings,
    *,
    budget: BudgetHook | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
    on_page: Progressed | None = None,
) -> AsyncIterator[Runtime]:
    """Everything a sweep needs; owns the HTTP client unless one is given."""
    own = http is None
    client = http or new_http_client()
    try:
        spend: BudgetHook = budget or RedisBudget(redis, settings)
        tenants = TenantStore(redis, settings)
        installations = InstallationStore(
            redis, SecretBox(settings.secret_keys), settings.redis_prefix
        )
        sites = TenantClients(client, settings, tenants, installations, spend)

        async def client_for(tenant: str) -> SweepClient:
            site = await sites.site(tenant)
            return SweepClient(
                client, site, spend, priority=Priority.RECONCILE, logger=log.bind(sweep=True)
            )

        state = ReconcileState(redis, settings.redis_prefix)
        queue = EventQueue(redis, settings)
        sweeper = Sweeper(state, queue, client_for, settings, clock=clock, on_page=on_page)
        yield Runtime(sweeper, tenants, installations, settings, clock)
    finally:
        if own:
            await client.aclose()


def _summary(report: SweepReport) -> dict[str, Any]:
    return {
        "items": report.items,
        "found": report.found,
        "enqueued": report.enqueued,
        "complete": report.complete,
        "yielded": report.yielded,
        "busy": report.busy,
    }


def _trash_summary(report: TrashReport) -> dict[str, Any]:
    return {
        "calls": report.calls,
        "listed": report.listed,
        "complete": report.complete,
        "baseline": report.baseline,
        "trashed": report.trashed,
        "restored": report.restored,
        "deleted": report.deleted,
        "enqueued": report.enqueued,
        "yielded": report.yielded,
        "failed": report.failed,
        "busy": report.busy,
    }


async def sweep_turn(rt: Runtime, turn: Turn) -> dict[str, Any]:
    """One tenant's turn: a run of its sweep if due, then of its trash listing if due. The
    listing waits while the sweep is unfinished (the sweep comes first for points) and never
    holds the sweep's watermark back."""
    done: dict[str, Any] = {}
    if turn.sweep:
        report = await rt.sweeper.run(turn.target, max_items=rt.settings.reconcile_max_items)
        done = _summary(report)
        if not report.complete:
            return done
    if turn.trash:
        done["trash"] = _trash_summary(await rt.sweeper.trash(turn.target))
    return done


async def sweep_due(
    rt: Runtime,
    *,
    seconds: float = TICK_SECONDS,
    at_once: int = SWEEPS_AT_ONCE,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, dict[str, Any]]:
    """One run of each due tenant's turn (:func:`sweep_turn`), ``at_once`` tenants at a time
    (each under its own lock), most urgent first, starting none after ``seconds`` (by
    ``clock``): a free slot takes the most urgent tenant not yet started.

    A failing tenant does not stop the others; tenants left over wait for the next tick.
    """
    done: dict[str, dict[str, Any]] = {}
    deadline = clock() + seconds
    turns = await rt.turns()
    waiting = iter(turns)  # shared: each free slot takes the most urgent turn left

    async def slot() -> None:
        for turn in waiting:
            if clock() >= deadline:
                return
            done[turn.target.tenant] = await _guarded(rt, turn)

    await asyncio.gather(*(slot() for _ in range(min(max(1, at_once), len(turns)))))
    left = [t.target.tenant for t in turns if t.target.tenant not in done]
    if left:
        log.info("sweeps left for the next tick", left=len(left), tenants=left[:10])
    return done


async def _guarded(rt: Runtime, turn: Turn) -> dict[str, Any]:
    tenant = turn.target.tenant
    state = rt.sweeper.state
    try:
        done = await sweep_turn(rt, turn)
    except Exception as exc:  # one tenant's failure (uninstalled, 5xx) must not stop others
        error = f"{type(exc).__name__}: {exc}"
        try:
            now_ms = int(rt.clock() * 1000)
            count = await state.turn_failed(tenant, now_ms, 2 * FAILURE_WAIT_MOST_SECONDS)
        except Exception:  # Redis itself failing: the turn is simply due again
            log.warning("sweep failed", tenant=tenant, error=error)
        else:
            wait = failure_wait_seconds(count)
            log.warning(
                "sweep failed", tenant=tenant, error=error, failures=count, next_in_seconds=wait
            )
        return {"error": type(exc).__name__}
    with contextlib.suppress(Exception):
        await state.turn_worked(tenant)
    log.info("sweep run", tenant=tenant, **done)
    return done


async def tick(ctx: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The worker's cron job: one run of each due sweep and trash listing."""
    settings: Settings = ctx["settings"]
    if settings.reconcile_interval_seconds == 0:
        return {}
    async with runtime(ctx["redis"], settings, budget=ctx.get("budget")) as rt:
        return await sweep_due(rt)
