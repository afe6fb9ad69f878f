"""The Confluence side of ``bench/budget.py`` by default: ``simulator/`` in its own process.

``python bench/budget_sim.py <port> <quota> <scale> <t0>`` serves the simulator with the app
quota ``quota`` and a clock that reads ``SIM_START + (time.time() - t0) * scale``: the
simulator's own :class:`~simulator.clock.Clock`, whose real-time source is the wall clock and
whose origin is ``t0``. The budget in every worker process runs on the same function
(:class:`bench.budget_world.SimClock`), so both sides agree on simulated time to the
microsecond, as Redis ``TIME`` and Atlassian's clock agree to NTP precision in production.

:func:`prepare` builds the world through the admin API (spaces of 1..24 pages, one Forge
installation per tenant of one app, their system tokens) and :func:`server_figures` reads the
server's own counters: points per app and UTC hour, and 429 answers.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

APP_ID = "ari:cloud:ecosystem::app/budget-bench"
LIST_SIZES = range(1, 25)  # pages per space: a list with limit=25 returns 1..24 objects
# Forge installations subscribe to an event the benchmark never causes, so the app's own
# comments are not delivered to a URL nobody serves.
QUIET_EVENTS = ["avi:confluence:trashed:page"]


class WallFrom:
    """A real-time source for :class:`Clock` whose first reading (the clock's origin) is ``t0``."""

    def __init__(self, t0: float) -> None:
        self.first: float | None = t0

    def __call__(self) -> float:
        if self.first is not None:
            value, self.first = self.first, None
            return value
        return time.time()


def serve(port: int, quota: int, scale: float, t0: float, sim_start: float) -> None:
    import uvicorn

    from simulator.clock import Clock
    from simulator.main import create_app
    from simulator.site import build

    clock = Clock(scale=scale, start=sim_start, monotonic=WallFrom(t0))
    url = f"http://127.0.0.1:{port}"
    sim = build(api_token="bench", app_quota=quota, clock=clock, seed=1, public_url=url)
    uvicorn.run(
        create_app(sim),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


@dataclass(frozen=True)
class World:
    """What workers need: the gateway root, a token per tenant, and the content to call."""

    api_base_url: str
    tokens: dict[str, str]
    pages: list[str]  # ids to read and comment on
    spaces: dict[int, str]  # pages in the space -> space id

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_base_url": self.api_base_url,
            "tokens": self.tokens,
            "pages": self.pages,
            "spaces": {str(k): v for k, v in self.spaces.items()},
        }


async def wait_ready(http: httpx.AsyncClient, seconds: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = await http.get("/_sim/")
            if response.status_code == 200:
                info: dict[str, Any] = response.json()
                return info
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start")
        await asyncio.sleep(0.1)


async def prepare(http: httpx.AsyncClient, tenants: tuple[str, ...]) -> World:
    """Spaces with 1..24 pages, and one installation of the app per tenant (admin API only:
    nothing here spends points)."""
    info = await wait_ready(http)
    owner = "admin@example.com"
    spaces: dict[int, str] = {}
    pages: list[str] = []
    for size in LIST_SIZES:
        made = await http.post("/_sim/spaces", json={"key": f"S{size}", "as": owner})
        made.raise_for_status()
        space = made.json()
        spaces[size] = str(space["id"])
        pages.append(str(space["homepageId"]))
        for n in range(size - 1):
            page = await http.post(
                "/_sim/act/pages",
                json={"as": owner, "spaceKey": f"S{size}", "title": f"P{n}", "body": "text"},
            )
            page.raise_for_status()
    tokens: dict[str, str] = {}
    api_base_url = ""
    for tenant in tenants:
        made = await http.post(
            "/_sim/apps/forge",
            json={
                "appId": APP_ID,
                "url": f"http://127.0.0.1:9/{tenant}",
                "events": QUIET_EVENTS,
                "name": tenant,
            },
        )
        made.raise_for_status()
        api_base_url = made.json()["apiBaseUrl"]
        issued = await http.post(
            "/_sim/apps/forge/token", json={"installationId": made.json()["installationId"]}
        )
        issued.raise_for_status()
        tokens[tenant] = issued.json()["token"]
    if not info.get("cloudId") and not api_base_url:
        raise RuntimeError("no gateway URL from the simulator")
    return World(api_base_url=api_base_url, tokens=tokens, pages=pages, spaces=spaces)


async def server_figures(http: httpx.AsyncClient) -> tuple[dict[str, int], int, int]:
    """(points per UTC hour ``YYYY-MM-DDTHH:00Z`` of the app, 429 answers, all app calls)."""
    counters = (await http.get("/_sim/counters")).json()
    by_hour: dict[str, int] = counters.get("pointsByHour", {}).get(APP_ID, {})
    calls: dict[str, int] = counters["calls"]
    n429 = sum(n for name, n in calls.items() if name.endswith(" 429"))
    return by_hour, n429, sum(calls.values())


if __name__ == "__main__":
    port, quota, scale, t0, start = sys.argv[1:6]
    serve(int(port), int(quota), float(scale), float(t0), float(start))
