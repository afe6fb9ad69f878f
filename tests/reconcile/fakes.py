"""A scripted Confluence (httpx.MockTransport) and budget for tick-level sweep tests.

Every site answers CQL search with no hits and lists its trash 250 pages a call, with a cursor.
Tests drive the cron tick's code (:func:`workers.reconcile_runtime.sweep_due`) on an injected
clock, so nothing waits on the wall clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from app.budget.hook import BudgetExhausted, Observation, Priority, Reservation
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from workers.reconcile_runtime import Runtime, runtime

START = 1_800_000_000.0  # the injected clock's start (epoch seconds)


def host(tenant: str) -> str:
    return f"{tenant}.example.net"


@dataclass
class Site:
    """One tenant's Confluence: its trash (page id -> version) and pages that left it."""

    trash: dict[str, int] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)  # pages out of the trash: current...
    listings: list[str | None] = field(default_factory=list)  # each trash call's cursor
    searches: int = 0
    fail_trash: bool = False
    refuse: bool = False  # every call answered 401 (credentials the site no longer knows)

    def answer(self, request: httpx.Request) -> httpx.Response:
        path, query = request.url.path, request.url.params
        if self.refuse:
            return httpx.Response(401, json={"message": "unauthorized"})
        if path.endswith("/rest/api/search"):
            self.searches += 1
            return httpx.Response(200, json={"results": [], "_links": {}})
        if path.endswith("/api/v2/pages") and query.get("status") == "trashed":
            return self._trash_page(query.get("cursor"), int(query["limit"]))
        if path.endswith("/api/v2/pages") and "id" in query:
            wanted = query["id"].split(",")
            found = [self._page(i, 1, self.status[i]) for i in wanted if i in self.status]
            return httpx.Response(200, json={"results": found, "_links": {}})
        return httpx.Response(404, json={"message": path})

    def _trash_page(self, cursor: str | None, limit: int) -> httpx.Response:
        self.listings.append(cursor)
        if self.fail_trash:
            return httpx.Response(500, json={"message": "boom"})
        ids = sorted(self.trash, key=int)
        start = int(cursor or 0)
        items = [self._page(i, self.trash[i], "trashed") for i in ids[start : start + limit]]
        links = {}
        if start + limit < len(ids):
            following = start + limit
            links["next"] = f"/wiki/api/v2/pages?status=trashed&limit={limit}&cursor={following}"
        return httpx.Response(200, json={"results": items, "_links": links})

    @staticmethod
    def _page(page_id: str, version: int, status: str) -> dict[str, Any]:
        return {
            "id": page_id,
            "status": status,
            "title": f"Page {page_id}",
            "spaceId": "1",
            "version": {"number": version, "createdAt": "2027-01-15T08:00:00.000Z"},
        }

    def listing_runs(self) -> int:
        """How many listings started from the first page."""
        return sum(1 for c in self.listings if c is None)


class Confluence:
    """Sites by host; ``hook`` (async) runs before each CQL search, e.g. to hold it."""

    def __init__(self) -> None:
        self.sites: dict[str, Site] = {}
        self.hook: Callable[[str], Awaitable[None]] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        tenant = request.url.host.split(".")[0]
        if self.hook is not None and request.url.path.endswith("/rest/api/search"):
            await self.hook(tenant)
        return self.sites[tenant].answer(request)


class Budget:
    """Admits ``allow`` more calls (None: every call), then says no as the budget does."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.allow: int | None = None

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        if self.allow is not None:
            if self.allow <= 0:
                now = self.clock()
                raise BudgetExhausted(now + 600, now, "no points left for sweeps")
            self.allow -= 1
        return Reservation(tenant=tenant, cost=cost, priority=priority)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        return None


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def world(
    redis: Redis, settings: Settings, tenants: list[str], **changes: Any
) -> AsyncIterator[tuple[Runtime, Confluence, Clock, Budget]]:
    """Connect tenants installed at the clock's start, each with its own fake site."""
    settings = settings.model_copy(update=changes)
    clock = Clock()
    confluence = Confluence()
    store = TenantStore(redis, settings)
    for tenant in tenants:
        confluence.sites[tenant] = Site()
        base_url = f"https://{host(tenant)}/wiki"
        await store.upsert(Tenant(tenant, "s" * 32, base_url), now=clock.now)
    budget = Budget(clock)
    transport = httpx.MockTransport(confluence.handle)
    async with (
        httpx.AsyncClient(transport=transport) as http,
        runtime(redis, settings, budget=budget, http=http, clock=clock) as rt,
    ):
        yield rt, confluence, clock, budget
