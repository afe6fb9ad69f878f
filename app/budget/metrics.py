"""Prometheus view of the points budget, filled from a :class:`~app.budget.model.Snapshot`.

The figures live in Redis (shared by every process), so they are exported as gauges set from
the latest snapshot rather than as process-local counters. Pass the registry to register on
(the app's, or a fresh ``CollectorRegistry`` in tests); nothing touches the global default.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from app.budget.hook import Priority
from app.budget.model import Snapshot


def _priority_name(value: int) -> str:
    try:
        return Priority(value).name.lower()
    except ValueError:
        return str(value)


class BudgetMetrics:
    """Gauges of this hour's budget: quota, spent, reserved, remaining, 429s, pause, forecast."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"reactor_budget_{name}", doc, labels, registry=registry)

        self.quota = gauge("quota_points", "points quota of the current UTC hour")
        self.spent = gauge("spent_points", "points settled this hour (ours + external)")
        self.reserved = gauge("reserved_points", "points reserved by calls in flight")
        self.remaining = gauge("remaining_points", "points left this hour")
        self.external = gauge("external_points", "points the server counted that we did not")
        self.tenant_spent = gauge("tenant_spent_points", "settled points per tenant", ("tenant",))
        self.tenant_reserved = gauge(
            "tenant_reserved_points", "in-flight points per tenant", ("tenant",)
        )
        self.priority_spent = gauge(
            "priority_spent_points", "settled points per priority", ("priority",)
        )
        self.priority_reserved = gauge(
            "priority_reserved_points", "in-flight points per priority", ("priority",)
        )
        self.n429 = gauge("429_responses", "429 responses this hour, all workers")
        self.paused = gauge("paused", "1 while a 429 pauses every call")
        self.paused_until = gauge("paused_until_seconds", "end of the global pause (epoch s)")
        self.tenants_paused = gauge("tenants_paused", "tenants paused by a tenant-quota 429")
        self.backlogged = gauge("backlogged_tenants", "tenants denied budget recently")
        self.near_limit = gauge("near_limit", "1 after the server said NearLimit this hour")
        self.forecast = gauge(
            "exhaustion_forecast_seconds",
            "when the quota runs out at the recent rate (epoch s; 0 = not this hour)",
        )

    def update(self, snap: Snapshot) -> None:
        """Set every gauge from ``snap``; tenants gone from the hour are dropped."""
        self.quota.set(snap.quota)
        self.spent.set(snap.spent)
        self.reserved.set(snap.reserved)
        self.remaining.set(snap.remaining)
        self.external.set(snap.external)
        self.tenant_spent.clear()
        self.tenant_reserved.clear()
        for tenant, usage in snap.tenants.items():
            self.tenant_spent.labels(tenant=tenant).set(usage.spent)
            self.tenant_reserved.labels(tenant=tenant).set(usage.reserved)
        self.priority_spent.clear()
        self.priority_reserved.clear()
        for priority, usage in snap.priorities.items():
            name = _priority_name(priority)
            self.priority_spent.labels(priority=name).set(usage.spent)
            self.priority_reserved.labels(priority=name).set(usage.reserved)
        self.n429.set(snap.n429)
        self.paused.set(1 if snap.paused_until is not None else 0)
        self.paused_until.set(snap.paused_until or 0)
        self.tenants_paused.set(len(snap.tenant_pauses))
        self.backlogged.set(len(snap.backlogged))
        self.near_limit.set(1 if snap.near_limit else 0)
        self.forecast.set(snap.forecast or 0)
