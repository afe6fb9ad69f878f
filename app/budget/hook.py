"""The contract between the Confluence client and the points budget.

The client calls :meth:`BudgetHook.reserve` before every request with an estimated cost, and
:meth:`BudgetHook.settle` after it with what the response told us (:class:`Observation`).
A hook that cannot admit a call raises :class:`BudgetExhausted` with the time at which budget
will exist; the job layer turns that into a deferral (never a failed attempt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from app.errors import Defer


class Priority(IntEnum):
    """Lower value = served first. Reactions to user events come before reconciliation sweeps."""

    INTERACTIVE = 0
    REACTION = 1
    RECONCILE = 2


# The longest wait a server's header is believed for: the quota is hourly, so nothing should
# take longer than the rest of this hour and the next; more would stop every worker for days.
MAX_WAIT_SECONDS = 2 * 3600.0
# The shortest wait after a 429, whatever it says: after "Retry-After: 0", or a date already
# past (clock skew), calling again at once only meets the next 429, as fast as we can send.
MIN_429_WAIT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What one Confluence response said about rate limits (all fields optional)."""

    status: int
    limit: int | None = None
    remaining: int | None = None
    reset_epoch: float | None = None
    near_limit: bool = False
    reason: str | None = None
    retry_after: float | None = None
    actual_cost: int | None = None
    raw: dict[str, str] = field(default_factory=dict)
    # The figures are one tenant's own quota (a ``tenant-app-quota`` policy, a tenant-based
    # reason), not the app's hourly quota that every tenant shares.
    tenant_scoped: bool = False


@dataclass(frozen=True, slots=True)
class Reservation:
    tenant: str
    cost: int
    priority: Priority
    token: str = ""


class BudgetExhausted(Defer):
    """No budget now; ``retry_at`` (epoch seconds) is when there will be."""

    def __init__(self, retry_at: float, now: float, reason: str) -> None:
        self.retry_at = retry_at
        super().__init__(retry_at - now, reason)


class BudgetHook(Protocol):
    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation: ...

    async def settle(self, reservation: Reservation, observation: Observation) -> None: ...


class Unmetered:
    """A hook that admits everything: scripts with API tokens, and unit tests of the client."""

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        return Reservation(tenant=tenant, cost=cost, priority=priority)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        return None
