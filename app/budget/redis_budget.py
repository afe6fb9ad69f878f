"""The points budget shared by every worker process through Redis (a :class:`BudgetHook`).

Two Lua scripts do all the bookkeeping atomically on the Redis server, with Redis ``TIME``
as the one clock (``scripts/reserve.lua`` before a call, ``scripts/settle.lua`` after it);
:mod:`app.budget.model` explains the arithmetic. Keys, all under ``settings.redis_prefix``:

* ``budget:h:<hour start ms>``: hash of the hour's counters (``charged``, ``reserved``,
  ``external``, ``limit``, ``near``, ``n429``, ``calls``, ``t:<tenant>:c|r``, ``p:<priority>:c|r``,
  ``m:<minute>``); it expires an hour after its hour ends.
* ``budget:pause`` and ``budget:pause:t:<tenant>``: "no calls before" (epoch ms) from a 429.
* ``budget:pauses``: sorted set of paused tenants (score: until when, epoch ms), pruned by the
  settle script, so that listing them never scans the keyspace.
* ``budget:backlog``: sorted set of tenants waiting for budget (score: until when, epoch ms);
  pruned by every reservation rather than expired, as it spans hours. ``budget:backlog:u``
  holds those waiting with a call above the sweep's priority: a tenant waiting only with a
  sweep (``Priority.RECONCILE``) holds back other tenants' sweeps, not their reactions.
* ``budget:share:<hour start ms>`` (and ``...:u``): the same tenants, scored by their points
  this hour per unit of weight, kept by both scripts and :meth:`RedisBudget.set_weight`, so
  that a reservation reads the least-served waiting tenants in O(log n). Tenants still
  waiting from the last hour are carried into this hour's sets a few per reservation.
* ``budget:weights``: hash of tenant fair-share weights (default 1).
* ``budget:burst``: the GCRA theoretical arrival time of the per-second burst limit.
* ``budget:inflight``: sorted set of unsettled reservations (score: when they are taken for a
  dead worker's, epoch ms; member ``<hour ms>|<id>|<priority>|<cost>|<tenant>``). Settling
  removes one; the reserve script gives back the "reserved" points of expired ones.

Tests and the benchmark pass ``clock`` (epoch seconds, possibly accelerated); production
leaves it unset so every process reads the same Redis clock.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.budget.hook import (
    MAX_WAIT_SECONDS,
    MIN_429_WAIT_SECONDS,
    BudgetExhausted,
    Observation,
    Priority,
    Reservation,
)
from app.budget.model import (
    HOUR,
    BudgetConfig,
    Snapshot,
    Usage,
    forecast_exhaustion,
    quota_headers,
    reconcile,
)
from app.settings import Settings

SCRIPTS = Path(__file__).parent / "scripts"
DEFAULT_429_PAUSE_MS = 5_000
FORECAST_MINUTES = 5
# Beyond the job timeout, before an unsettled reservation is taken for a dead worker's.
INFLIGHT_MARGIN_SECONDS = 60.0
# How far Confluence's clock may be from Redis's at the top of the hour: a response whose
# window resets no later than this after the hour began reports the hour that has ended.
CLOCK_SKEW_SECONDS = 10.0


def config_from_settings(settings: Settings) -> BudgetConfig:
    """The budget's tunables from the ``REACTOR_BUDGET_*`` settings."""
    return BudgetConfig(
        points_per_hour=settings.budget_points_per_hour,
        tenant_points_per_hour=settings.budget_tenant_points_per_hour,
        reserve_fraction=settings.budget_reserve_fraction,
        release_seconds=settings.budget_reserve_release_seconds,
        pacing=settings.budget_pacing,
        pacing_lead_seconds=settings.budget_pacing_lead_seconds,
        burst_per_second=settings.budget_burst_per_second,
        backlog_window_seconds=settings.budget_backlog_window_seconds,
        max_wait_seconds=settings.budget_max_wait_seconds,
        inflight_seconds=settings.job_timeout_seconds + INFLIGHT_MARGIN_SECONDS,
    )


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBudget:
    """Reserve before each Confluence call and settle after it, across processes and hosts."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        config: BudgetConfig | None = None,
        clock: Callable[[], float] | None = None,
        time_scale: float = 1.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.redis = redis
        self.prefix = settings.redis_prefix
        self.config = config or config_from_settings(settings)
        self.clock = clock
        self.time_scale = time_scale
        self._sleep = sleep
        self._reserve = redis.register_script((SCRIPTS / "reserve.lua").read_text())
        self._settle = redis.register_script((SCRIPTS / "settle.lua").read_text())

    def key(self, name: str) -> str:
        return f"{self.prefix}budget:{name}"

    def _now_arg(self) -> str:
        return "" if self.clock is None else _ms(self.clock())

    async def now(self) -> float:
        """The budget's clock: the injected one, else Redis server time (epoch seconds)."""
        if self.clock is not None:
            return float(self.clock())
        seconds, micros = await self.redis.time()
        return float(seconds) + float(micros) / 1e6

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        """Admit a call of ``cost`` points now, after a short in-process wait if one helps.

        Raises :class:`BudgetExhausted` when the budget will not exist within
        ``max_wait_seconds`` (pause, hour spent, pacing, fair share of other tenants).
        """
        c = self.config
        waited = 0.0
        rid = uuid.uuid4().hex
        while True:
            args: list[str | int | float] = [
                self.prefix,
                self._now_arg(),
                tenant,
                max(1, int(cost)),
                int(priority),
                c.points_per_hour,
                c.tenant_points_per_hour,
                c.reserve_fraction,
                _ms(c.release_seconds),
                "1" if c.pacing else "0",
                _ms(c.pacing_lead_seconds),
                c.burst_per_second,
                _ms(c.backlog_window_seconds),
                c.near_limit_factor,
                _ms(c.backlog_grace_seconds),
                rid,
                _ms(c.inflight_seconds),
                int(Priority.RECONCILE),
            ]
            result = await self._reserve(keys=[], args=args)
            admitted, now_ms, third = int(result[0]), int(result[1]), int(result[2])
            if admitted:
                token = f"{third}:{rid}"
                return Reservation(
                    tenant=tenant, cost=max(1, int(cost)), priority=priority, token=token
                )
            reason = _text(result[3])
            now, retry_at = now_ms / 1000, third / 1000
            wait = retry_at - now
            if waited + wait > c.max_wait_seconds:
                raise BudgetExhausted(retry_at, now, reason)
            waited += wait
            await self._sleep(max(wait, 0.001) / self.time_scale)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        """Replace the estimate by the actual cost; learn pauses and limits from the headers."""
        args = self._settle_args(reservation, observation)
        if args is not None:
            await self._settle(keys=[], args=args)

    def settle_later(
        self, reservation: Reservation, observation: Observation
    ) -> Callable[[Pipeline], None] | None:
        """:meth:`settle` as commands for a pipeline the caller sends soon with other writes,
        for a plain success only (2xx, no pause asked, not near the limit); None otherwise:
        what must reach every process at once (a 429, a pause, a low remainder) is settled
        with :meth:`settle`. Until it is sent, the call's estimate stays reserved."""
        ok = 200 <= observation.status < 300
        if not ok or observation.retry_after is not None or observation.near_limit:
            return None
        args = self._settle_args(reservation, observation)
        if args is None:
            return None  # not one of ours: settle() has nothing to write either
        # EVAL with the script's text, not EVALSHA: the caller's round trip ignores errors, so
        # a Redis that lost its scripts (restart, SCRIPT FLUSH, failover) would drop every
        # settlement sent this way without a word, and estimates would stay reserved all hour.
        command = ["EVAL", self._settle.script, 0, *args]

        def add(pipe: Pipeline) -> None:
            pipe.execute_command(*command)

        return add

    def _settle_args(
        self, reservation: Reservation, observation: Observation
    ) -> list[str | int | float] | None:
        hour_start, _, rid = reservation.token.partition(":")
        if not hour_start.isdigit():
            return None  # not one of ours (e.g. from Unmetered)
        charge = reconcile(reservation.cost, observation.actual_cost, observation.status)
        retry_after = observation.retry_after
        if retry_after is not None and not math.isfinite(retry_after):
            retry_after = None  # not a time to wait: the default pause for a 429
        elif retry_after is not None:
            retry_after = min(max(0.0, retry_after), MAX_WAIT_SECONDS)
            if observation.status == 429:
                retry_after = max(retry_after, MIN_429_WAIT_SECONDS)
        # One tenant's own quota says nothing of the app's hour that every tenant shares: its
        # figures are not learned (a 429 of it pauses that tenant alone, in the script).
        shared = not observation.tenant_scoped
        limit, remaining = quota_headers(
            observation.limit if shared else None,
            observation.remaining if shared else None,
            self.config.points_per_hour,
        )
        reset = observation.reset_epoch
        return [
            self.prefix,
            self._now_arg(),
            reservation.tenant,
            int(reservation.priority),
            hour_start,
            reservation.cost,
            charge,
            observation.status,
            remaining,
            limit,
            "1" if observation.near_limit and shared else "0",
            -1 if retry_after is None else _ms(retry_after),
            observation.reason or "",
            self.config.points_per_hour,
            DEFAULT_429_PAUSE_MS,
            rid if self.config.inflight_seconds > 0 else "",  # tracked only then (reserve)
            "1" if observation.tenant_scoped else "0",
            -1 if reset is None or not math.isfinite(reset) or reset < 0 else _ms(reset),
            _ms(CLOCK_SKEW_SECONDS),
        ]

    async def set_weight(self, tenant: str, weight: float) -> None:
        """A tenant's fair-share weight (default 1; 2 means twice the share when scarce)."""
        if weight <= 0:
            raise ValueError("weight must be positive")
        await self.redis.hset(self.key("weights"), tenant, str(weight))  # type: ignore[misc]
        # a waiting tenant's place among the least served changes with its weight now
        hour = int((await self.now()) // HOUR * HOUR * 1000)
        spent = await self.redis.hget(self.key(f"h:{hour}"), f"t:{tenant}:c")  # type: ignore[misc]
        level = repr(int(spent or 0) / weight)
        for name in (f"share:{hour}", f"share:{hour}:u"):
            await self.redis.zadd(self.key(name), {tenant: level}, xx=True)

    async def forget_waiting(self, tenant: str) -> None:
        """The tenant is gone (uninstalled): it no longer waits for budget, so it holds no
        other tenant back for the rest of its backlog window."""
        hour = int((await self.now()) // HOUR * HOUR * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            for name in ("backlog", "backlog:u", f"share:{hour}", f"share:{hour}:u"):
                pipe.zrem(self.key(name), tenant)
            await pipe.execute()

    async def snapshot(self) -> Snapshot:
        """This hour's figures per tenant and priority, pauses, backlog and forecast."""
        now = await self.now()
        hour_start = now // HOUR * HOUR
        hour_key = self.key(f"h:{int(hour_start * 1000)}")
        raw: dict[bytes | str, bytes | str] = await self.redis.hgetall(hour_key)  # type: ignore[misc]
        fields = {_text(k): int(v) for k, v in raw.items()}
        tenants: dict[str, dict[str, int]] = {}
        priorities: dict[int, dict[str, int]] = {}
        for name, value in fields.items():
            kind, _, rest = name.partition(":")
            group, _, part = rest.rpartition(":")
            if kind == "t" and group:
                tenants.setdefault(group, {})[part] = value
            elif kind == "p" and group.isdigit():
                priorities.setdefault(int(group), {})[part] = value
        quota = min(self.config.points_per_hour, fields.get("limit", self.config.points_per_hour))
        minute = int((now - hour_start) // 60)
        recent = sum(
            fields.get(f"m:{m}", 0) for m in range(minute - FORECAST_MINUTES + 1, minute + 1)
        )
        window = min(now - hour_start, FORECAST_MINUTES * 60.0)
        charged, external = fields.get("charged", 0), fields.get("external", 0)
        return Snapshot(
            now=now,
            hour_start=hour_start,
            quota=quota,
            charged=charged,
            reserved=fields.get("reserved", 0),
            external=external,
            n429=fields.get("n429", 0),
            near_limit=bool(fields.get("near", 0)),
            paused_until=await self._pause_until(self.key("pause"), now),
            tenant_pauses=await self._tenant_pauses(now),
            tenants={t: Usage(v.get("c", 0), v.get("r", 0)) for t, v in tenants.items()},
            priorities={p: Usage(v.get("c", 0), v.get("r", 0)) for p, v in priorities.items()},
            backlogged=await self._backlogged(now),
            forecast=forecast_exhaustion(
                now=now,
                quota=quota,
                spent=charged + external,
                recent_points=recent,
                recent_seconds=window,
                exhausted_at=fields["exhausted"] / 1000 if "exhausted" in fields else None,
            ),
        )

    async def _backlogged(self, now: float) -> tuple[str, ...]:
        members = await self.redis.zrangebyscore(self.key("backlog"), f"({now * 1000}", "+inf")
        return tuple(_text(m) for m in members)

    async def _pause_until(self, key: str, now: float) -> float | None:
        raw = await self.redis.get(key)
        until = None if raw is None else int(raw) / 1000
        return until if until is not None and until > now else None

    async def _tenant_pauses(self, now: float) -> dict[str, float]:
        """Paused tenants and until when: read from ``budget:pauses``, whatever the size of
        the keyspace (a SCAN for their keys walked every key of the database)."""
        rows = await self.redis.zrangebyscore(
            self.key("pauses"), f"({now * 1000}", "+inf", withscores=True
        )
        return {_text(tenant): until / 1000 for tenant, until in rows}
