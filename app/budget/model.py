"""The points budget, as pure arithmetic (no I/O): what the Lua scripts decide, explained.

Quota shape
    Confluence meters every app in points per UTC hour: one pool of ``points_per_hour``
    (65,000 on the default tier) shared by every tenant and every worker, reset at the top
    of the hour with no carry-over. A deployment on the per-tenant tier also has
    ``tenant_points_per_hour`` per site. Separately the server enforces per-second burst
    limits; we keep our own request rate under ``burst_per_second`` with GCRA (one stored
    "theoretical arrival time", a capacity of one second's worth of requests).

Cost estimate (:func:`estimate_cost`)
    One point per request plus one per object returned (two for users, groups and
    permissions); writes cost one point in total. Before a call we do not know how many
    objects come back, so a list is charged as if it returned its full ``limit``.

Reconciliation (:func:`reconcile`, :func:`adopt_remaining`)
    A reservation charges the estimate at once (in-flight calls count as spent, so a worker
    that dies mid-call can only make us more careful). Settlement replaces the estimate by
    the actual cost. When the server reports fewer remaining points than we think are left
    (other installations of the app, another deployment, our estimates too low), we adopt
    its figure by adding the difference as "external" spend; a higher figure is ignored.
    A lower ``X-RateLimit-Limit`` lowers the hour's quota, unless it is too small to be the
    points quota (:func:`quota_headers`). ``X-RateLimit-NearLimit`` halves the burst rate and
    turns pacing on for the rest of the hour.

Priorities and the reserve (:func:`reserve_points`)
    ``Priority`` 0 (interactive) may spend the whole quota. Each lower level leaves another
    ``reserve_fraction`` of the quota untouched, so reactions to user events keep points
    that reconciliation sweeps cannot take. Points that are never spent vanish at the reset,
    so the reserve shrinks linearly to zero over the hour's last ``release_seconds``.

Pacing (:func:`paced_cap`)
    Optional: by a point in the hour, at most ``cap * (elapsed + lead) / 3600`` may have been
    spent, where ``cap`` is the priority's share (the quota less its reserve), so a burst at
    minute 5 cannot leave nothing for minute 50. Unspent allowance accumulates; ``lead`` lets a
    quiet deployment start with some points in hand. Every priority is paced, each on its own
    line, so the top priority is always ``reserve`` points ahead of the others.

Fairness (:func:`fair_gate`)
    Weighted max-min fairness of the hour's points among *backlogged* tenants. A tenant is
    backlogged from a denial until ``backlog_window`` seconds after its retry time, or until
    ``backlog_grace`` seconds after it is next admitted (time for its next queued call to
    show up and be denied again if it still has work); the mark is a sorted set in Redis, so
    every process sees it. Only a denial whose points another tenant's call would take marks
    a tenant (the pacing line, the burst limit, its fair share): one refused for its own
    reasons (the reserve of its priority, a list larger than what is left, the hour's quota)
    is not marked, since it could not use the points. A tenant is admitted when no
    other tenant is backlogged, or when its spend per unit of weight is not above that of
    the least-served backlogged tenant. A tenant at 100x the demand of the others therefore
    gets everything nobody else asks for, and no more than its share while others wait.
    The sweep comes last: a tenant waiting only with a ``RECONCILE`` call holds back other
    tenants' sweeps, not their reactions. In Redis the waiting tenants are also kept sorted
    by spend per weight, so a reservation reads only the least served of them (at most 16:
    the retry time it gives is the earliest among those), whatever the number waiting.
    A window of 0 switches fair shares off (first come, first served).

Forecast (:func:`forecast_exhaustion`)
    At the spend rate of the last few minutes, when the hour's quota runs out (None when it
    lasts until the reset).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

HOUR = 3600.0
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """The budget's tunables (built from the settings by the Redis implementation)."""

    points_per_hour: int = 65_000
    tenant_points_per_hour: int = 0
    reserve_fraction: float = 0.05
    release_seconds: float = 300.0
    pacing: bool = True
    pacing_lead_seconds: float = 60.0
    burst_per_second: float = 50.0
    backlog_window_seconds: float = 30.0
    backlog_grace_seconds: float = 2.0
    near_limit_factor: float = 0.5
    max_wait_seconds: float = 1.0
    # How long a reservation may stay unsettled before it is taken for a dead worker's and its
    # estimate leaves "reserved" (0: never). A run settles at its end at the latest, so this
    # is the job timeout plus a margin.
    inflight_seconds: float = 0.0


def hour_bounds(now: float) -> tuple[float, float]:
    """The UTC hour containing ``now`` (epoch seconds) as ``(start, end)``."""
    start = math.floor(now / HOUR) * HOUR
    return start, start + HOUR


def estimate_cost(
    method: str, *, objects: int = 1, object_points: int = 1, list_limit: int | None = None
) -> int:
    """Points a call will cost: writes 1; reads 1 + points per object x expected objects.

    ``list_limit`` (a list call's ``limit``) is the worst case and wins over ``objects``.
    """
    if method.upper() not in READ_METHODS:
        return 1
    expected = list_limit if list_limit is not None else objects
    return 1 + max(0, expected) * max(1, object_points)


def reconcile(estimate: int, actual: int | None, status: int) -> int:
    """The points to charge once the response is known.

    A 429 is not charged (the server blocked it); otherwise the actual cost when the client
    could count it, else the estimate.
    """
    if status == 429:
        return 0
    return estimate if actual is None else max(0, actual)


def adopt_remaining(quota: int, spent: int, server_remaining: int) -> int:
    """Extra spend to record so our remaining equals the server's when the server says less."""
    ours = quota - spent
    return max(0, ours - max(0, server_remaining))


def quota_headers(limit: int | None, remaining: int | None, quota: int) -> tuple[int, int]:
    """The server's ``(limit, remaining)`` to learn from, ``-1`` for "nothing to learn".

    A limit below a tenth of the configured quota is not the hourly points quota (older
    ``X-RateLimit-*`` counters of a few hundred requests still appear) and both values are
    ignored rather than shrinking the budget to that counter.
    """
    if limit is not None and limit < quota / 10:
        return -1, -1
    return (-1 if limit is None else limit), (-1 if remaining is None else max(0, remaining))


def reserve_points(config: BudgetConfig, quota: int, priority: int, seconds_left: float) -> float:
    """Points priority ``priority`` must leave unspent (zero for the top priority)."""
    if priority <= 0 or config.reserve_fraction <= 0:
        return 0.0
    release = 1.0
    if config.release_seconds > 0:
        release = min(1.0, max(0.0, seconds_left) / config.release_seconds)
    return config.reserve_fraction * quota * priority * release


def paced_cap(cap: float, elapsed: float, lead: float) -> float:
    """The share of ``cap`` a paced spender may have used ``elapsed`` seconds into the hour."""
    return cap * min(1.0, max(0.0, elapsed + lead) / HOUR)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a reservation fits, and if not when it will (epoch seconds) and why."""

    admitted: bool
    retry_at: float = 0.0
    reason: str = ""


def quota_decision(
    config: BudgetConfig,
    *,
    now: float,
    quota: int,
    spent: float,
    cost: int,
    priority: int,
    paced: bool,
) -> Decision:
    """Apply the hour's quota, the priority reserve and pacing to one reservation."""
    start, end = hour_bounds(now)
    need = spent + cost
    if need > quota:
        return Decision(False, end, "quota")
    cap = quota - reserve_points(config, quota, priority, end - now)
    if need > cap:
        # The reserve shrinks over the hour's last release_seconds: find when it fits.
        if config.release_seconds <= 0:
            return Decision(False, end, "reserve")
        per_second = config.reserve_fraction * quota * priority / config.release_seconds
        return Decision(False, end - (quota - need) / per_second, "reserve")
    if paced and need > paced_cap(cap, now - start, config.pacing_lead_seconds):
        when = start + need / cap * HOUR - config.pacing_lead_seconds
        return Decision(False, min(end, max(now, when)), "pacing")
    return Decision(True)


def fair_gate(
    tenant: str,
    spent: Mapping[str, float],
    weights: Mapping[str, float],
    backlogged: Iterable[str],
) -> tuple[bool, float]:
    """Max-min fairness among backlogged tenants: ``(admit, points behind to catch up)``.

    ``tenant`` may go when no other tenant is backlogged or when its spend per weight is
    not above the least-served backlogged tenant's. Otherwise the second value is how many
    of ``tenant``'s points the others must spend (per its weight) before it may go again.
    """
    mine = spent.get(tenant, 0.0) / weights.get(tenant, 1.0)
    levels = [spent.get(u, 0.0) / weights.get(u, 1.0) for u in backlogged if u != tenant]
    if not levels or mine <= min(levels):
        return True, 0.0
    return False, (mine - min(levels)) * weights.get(tenant, 1.0)


def jain_index(values: Iterable[float]) -> float:
    """Jain's fairness index: 1.0 when all equal, 1/n when one takes everything."""
    xs = list(values)
    if not xs:
        return 1.0
    square = sum(x * x for x in xs)
    return 1.0 if square == 0 else sum(xs) ** 2 / (len(xs) * square)


def forecast_exhaustion(
    *,
    now: float,
    quota: int,
    spent: float,
    recent_points: float,
    recent_seconds: float,
    exhausted_at: float | None = None,
) -> float | None:
    """When the quota runs out at the recent rate (epoch seconds), or None if not this hour.

    Once it has run out: when that happened (``exhausted_at``, recorded by the budget
    scripts), never a "now" that moves on with every look.
    """
    _, end = hour_bounds(now)
    if spent >= quota:
        return exhausted_at if exhausted_at is not None else now
    if recent_seconds <= 0 or recent_points <= 0:
        return None
    when = now + (quota - spent) / (recent_points / recent_seconds)
    return when if when < end else None


@dataclass(frozen=True, slots=True)
class Usage:
    """Spent (settled), reserved (in flight) and charged (both) points of one group."""

    charged: int = 0
    reserved: int = 0

    @property
    def spent(self) -> int:
        return self.charged - self.reserved


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The budget as the dashboard and the metrics see it."""

    now: float
    hour_start: float
    quota: int
    charged: int
    reserved: int
    external: int
    n429: int
    near_limit: bool
    paused_until: float | None
    tenant_pauses: Mapping[str, float]
    tenants: Mapping[str, Usage]
    priorities: Mapping[int, Usage]
    backlogged: tuple[str, ...]
    forecast: float | None

    @property
    def spent(self) -> int:
        """Settled points of ours plus what the server says others spent."""
        return self.charged - self.reserved + self.external

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.charged - self.external)
