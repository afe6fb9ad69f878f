"""Forge installations of one app share its points quota; the counters give points per hour."""

from __future__ import annotations

import httpx

from simulator.clock import Clock
from simulator.keys import KeyPair
from simulator.main import create_app
from simulator.site import build
from tests.simulator.conftest import TOKEN, basic

APP = "ari:cloud:ecosystem::app/shared"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_installations_share_the_app_quota_and_hours_are_counted(
    keys: tuple[KeyPair, KeyPair],
) -> None:
    fake = FakeTime()
    start = 1_800_000_000.0 - 60  # 07:59:00Z, a minute before an hour boundary
    sim = build(api_token=TOKEN, keys=keys, clock=Clock(start=start, monotonic=fake))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(sim)),
        base_url="https://site.test",
        headers={"Authorization": basic()},
    ) as c:
        await c.put("/_sim/ratelimit", json={"appQuota": 3})
        tokens = []
        for url in ("https://a.test/e", "https://b.test/e"):
            made = await c.post("/_sim/apps/forge", json={"appId": APP, "url": url})
            issued = await c.post(
                "/_sim/apps/forge/token", json={"installationId": made.json()["installationId"]}
            )
            assert issued.status_code == 201
            tokens.append(issued.json()["token"])
        unknown = await c.post("/_sim/apps/forge/token", json={"installationId": "nope"})
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_installation"

        path = f"/ex/confluence/{sim.store.cloud_id}/wiki/api/v2/spaces"

        async def call(token: str) -> httpx.Response:
            return await c.get(path, headers={"Authorization": f"Bearer {token}"})

        assert [(await call(t)).status_code for t in (*tokens, tokens[0])] == [200, 200, 200]
        limited = await call(tokens[1])  # the second installation spent the same app quota
        assert limited.status_code == 429
        assert limited.headers["ratelimit-reason"] == "confluence-quota-global-based"
        fake.now += 60.0  # the next UTC hour: a fresh quota
        fresh = await call(tokens[1])
        assert fresh.status_code == 200 and fresh.headers["x-ratelimit-remaining"] == "2"
        counters = (await c.get("/_sim/counters")).json()
        assert counters["pointsByHour"] == {APP: {"2027-01-15T07:00Z": 3, "2027-01-15T08:00Z": 1}}
