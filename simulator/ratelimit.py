"""Points-based hourly quotas and burst limits, as Confluence Cloud meters apps since 2026.

Pure arithmetic over an injected :class:`~simulator.clock.Clock`:

* an hourly points quota per app shared by every tenant (default 65,000); a site given a
  quota of its own (Atlassian's per-tenant tier, which may be above the shared one) is held to
  that one instead; windows reset at the top of each (simulated) UTC hour;
* a request costs 1 point plus one per object returned; writes cost 1;
* burst token buckets per caller: GET and POST 100/s, PUT and DELETE 50/s;
* API-token (Basic) traffic sees burst limits only.

A quota 429 carries the quota headers, ``Retry-After`` to the window's reset and a
``confluence-quota-*`` reason; a burst 429 (and an injected 429 storm, an overload of the same
kind) a short ``Retry-After``, ``RateLimit-Reason: confluence-burst-based`` and
``X-RateLimit-Reset`` = now + ``Retry-After``, without the quota counters.

With ``enforce`` off the quota is in its pre-enforcement ("beta") phase, as Atlassian ran it
before enforcing it for an app: points are counted but an exhausted quota refuses nothing.
Responses carry the structured beta headers instead of the enforced ones,
``Beta-RateLimit-Policy: "global-app-quota";q=65000;w=3600`` and
``Beta-RateLimit: "global-app-quota";r=<left>;t=<seconds to reset>`` (``tenant-app-quota`` for
a site with a quota of its own), with ``X-Beta-RateLimit-NearLimit``; a request that arrives
once the quota is spent, which enforcement would refuse, is served with ``Beta-Retry-After``,
``X-Beta-RateLimit-Reason`` and ``X-Beta-RateLimit-Reset``, and without the policy header (as
observed on Confluence in 2026-03). Burst limits are enforced in both phases.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from simulator.clock import Clock, iso_ms

HOUR = 3600.0
NEAR_LIMIT_FRACTION = 0.2
BURST_RATES = {"GET": 100.0, "POST": 100.0, "PUT": 50.0, "DELETE": 50.0}
REASON_GLOBAL = "confluence-quota-global-based"
REASON_TENANT = "confluence-quota-tenant-based"
REASON_BURST = "confluence-burst-based"
POLICY_GLOBAL = "global-app-quota"
POLICY_TENANT = "tenant-app-quota"


@dataclass
class Limited:
    """A 429: why, and the headers to send."""

    reason: str
    retry_after: int
    headers: dict[str, str]


def burst_limited(now: float, wait: int) -> Limited:
    """A burst (overload) 429: a short ``Retry-After``, the burst reason, and
    ``X-RateLimit-Reset`` = now + ``Retry-After``; not the hourly quota, so no quota counters."""
    return Limited(
        REASON_BURST,
        wait,
        {
            "Retry-After": str(wait),
            "RateLimit-Reason": REASON_BURST,
            "X-RateLimit-Reset": iso_ms(now + wait),
        },
    )


@dataclass
class Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    clock: Clock
    app_quota: int = 65_000
    tenant_quotas: dict[str, int] = field(default_factory=dict)
    burst_rates: dict[str, float] = field(default_factory=lambda: dict(BURST_RATES))
    spent_app: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    spent_tenant: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    points_total: int = 0
    enforce: bool = True  # False: the quota's pre-enforcement phase (beta headers, no 429)

    def window(self) -> int:
        return int(self.clock.time() // HOUR)

    def reset_at(self) -> float:
        return (self.window() + 1) * HOUR

    def _seconds_to_reset(self) -> int:
        return max(1, math.ceil(self.reset_at() - self.clock.time()))

    # -- burst ---------------------------------------------------------------------------
    def take_burst(self, caller: str, method: str) -> Limited | None:
        rate = self.burst_rates.get(method.upper(), self.burst_rates["GET"])
        key = (caller, method.upper())
        now = self.clock.time()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(tokens=rate, updated=now)
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return burst_limited(now, max(1, math.ceil((1.0 - bucket.tokens) / rate)))

    # -- points --------------------------------------------------------------------------
    def _remaining(self, app: str, tenant: str) -> tuple[int, int, str]:
        """(limit, remaining, reason-if-exhausted) of the quota the tenant is held to: its own
        when it has one, else the app's shared one."""
        window = self.window()
        tenant_quota = self.tenant_quotas.get(tenant)
        if tenant_quota is not None:
            left = tenant_quota - self.spent_tenant[(window, app, tenant)]
            return tenant_quota, left, REASON_TENANT
        return self.app_quota, self.app_quota - self.spent_app[(window, app)], REASON_GLOBAL

    def exhausted(self, app: str, tenant: str) -> bool:
        """Whether the quota is spent: what enforcement refuses, and beta only reports."""
        return self._remaining(app, tenant)[1] <= 0

    def check_quota(self, app: str, tenant: str) -> Limited | None:
        _, remaining, reason = self._remaining(app, tenant)
        if remaining > 0 or not self.enforce:
            return None
        wait = self._seconds_to_reset()
        headers = self.quota_headers(app, tenant)
        headers.update({"Retry-After": str(wait), "RateLimit-Reason": reason})
        return Limited(reason, wait, headers)

    def charge(self, app: str, tenant: str, points: int) -> None:
        window = self.window()
        self.spent_app[(window, app)] += points
        self.spent_tenant[(window, app, tenant)] += points
        self.points_total += points

    def quota_headers(self, app: str, tenant: str, *, refused: bool = False) -> dict[str, str]:
        """The quota headers of an app response (charged already): enforced or beta ones.

        ``refused``: the request arrived with the quota spent (only served before enforcement).
        """
        if not self.enforce:
            return self.beta_headers(app, tenant, refused=refused)
        limit, remaining, _ = self._remaining(app, tenant)
        remaining = max(0, remaining)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": iso_ms(self.reset_at()),
            "X-RateLimit-NearLimit": "true" if remaining < limit * NEAR_LIMIT_FRACTION else "false",
        }

    def beta_headers(self, app: str, tenant: str, *, refused: bool = False) -> dict[str, str]:
        """Pre-enforcement headers: the structured pair, and for a request enforcement would
        have refused (``refused``) what its 429 would have said instead of the policy."""
        limit, remaining, reason = self._remaining(app, tenant)
        policy = POLICY_TENANT if reason == REASON_TENANT else POLICY_GLOBAL
        wait = self._seconds_to_reset()
        left = max(0, remaining)
        headers = {
            "Beta-RateLimit": f'"{policy}";r={left};t={wait}',
            "X-Beta-RateLimit-NearLimit": "true" if left < limit * NEAR_LIMIT_FRACTION else "false",
        }
        if not refused:
            headers["Beta-RateLimit-Policy"] = f'"{policy}";q={limit};w={int(HOUR)}'
        else:
            headers.update(
                {
                    "Beta-Retry-After": str(wait),
                    "X-Beta-RateLimit-Reason": reason,
                    "X-Beta-RateLimit-Reset": iso_ms(self.reset_at()),
                }
            )
        return headers

    def spent_by_hour(self) -> dict[str, dict[str, int]]:
        """Points charged per app and UTC hour (``YYYY-MM-DDTHH:00Z``), for the counters."""
        table: dict[str, dict[str, int]] = defaultdict(dict)
        for (window, app), points in sorted(self.spent_app.items()):
            hour = iso_ms(window * HOUR)[:13] + ":00Z"
            if points:
                table[app][hour] = points
        return dict(table)

    def spent(self, app: str) -> int:
        return self.spent_app[(self.window(), app)]


def cost(method: str, objects: int) -> int:
    """1 point per request plus 1 per object returned; writes are charged the base cost only."""
    if method.upper() in ("GET", "HEAD"):
        return 1 + max(0, objects)
    return 1
