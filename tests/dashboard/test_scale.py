"""What the Overview, the Tenants stats and the Jobs search read, with many records held: the
small fields of a bounded slice, and whole records only for the rows shown. Counted, not
timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request

from app.dashboard import views
from app.dashboard.data import ReadModel
from app.settings import Settings
from tests.dashboard.helpers import TOKEN, count_reads, hold, make_event

HELD = 2500  # newer done arrivals than any of the old listings looked through


@pytest.fixture
async def api(live_server: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    server = live_server()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


async def test_the_overview_shows_old_failures_and_reads_no_payload(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = make_event(tenant="site-f", content_id="1")
    dead = make_event(tenant="site-d", content_id="2")
    await hold(redis, settings, [failing], "failed")
    await hold(redis, settings, [dead], "dead")
    await hold(redis, settings, [make_event(content_id=str(10 + n)) for n in range(HELD)])
    reads = count_reads(monkeypatch)
    status = (await api.get("/api/status")).json()
    assert {f["id"] for f in status["failing"]} == {failing.id, dead.id}
    assert sorted((t["tenant"], t["dead"], t["failing"]) for t in status["failing_tenants"]) == [
        ("site-d", 1, 0),
        ("site-f", 0, 1),
    ]
    assert reads.whole == 0, "no event record is read with its payload for the overview"


async def test_tenant_stats_read_the_small_fields_of_their_sample_only(
    settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hold(redis, settings, [make_event(tenant="site-b", content_id="1")], "dead")
    await hold(redis, settings, [make_event(content_id=str(10 + n)) for n in range(600)])
    model = ReadModel(redis, settings)
    reads = count_reads(monkeypatch)
    stats = await model.by_tenant(sample=100)
    assert stats["site-a"]["events"] == 100 and "site-b" not in stats
    assert reads.whole == 0 and reads.round_trips <= 4
    reads.reset()
    everything = await model.by_tenant(sample=1000)
    assert (everything["site-a"]["events"], everything["site-b"]["failed"]) == (600, 1)
    assert reads.whole == 0


async def test_a_filtered_jobs_page_reads_whole_only_the_rows_it_shows(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    others = [make_event(tenant="site-b", content_id=str(n)) for n in range(1, 5)]
    await hold(redis, settings, [make_event(content_id=str(10 + n)) for n in range(HELD)])
    await hold(redis, settings, others)
    index = await redis.zrevrange(f"{settings.redis_prefix}events", 0, -1)
    newest = [i.decode() for i in index if i.decode() in {e.id for e in others}]
    reads = count_reads(monkeypatch)
    nobody = (await api.get("/api/jobs", params={"tenant": "nobody", "limit": 5})).json()
    assert nobody["jobs"] == [] and nobody["next_cursor"] is not None, "a bounded slice"
    assert reads.whole == 0, "nothing matched: no record read whole"
    reads.reset()
    page = (await api.get("/api/jobs", params={"tenant": "site-b", "limit": 3})).json()
    assert [j["id"] for j in page["jobs"]] == newest[:3]
    assert all(j["title"].startswith("Page ") for j in page["jobs"]), "read whole"
    assert reads.whole == 3
    rest = await api.get("/api/jobs", params={"tenant": "site-b", "cursor": page["next_cursor"]})
    assert [j["id"] for j in rest.json()["jobs"]] == newest[3:]
    reads.reset()
    one = (await api.get("/api/jobs", params={"content_id": "3", "status": "done"})).json()
    assert [j["id"] for j in one["jobs"]] == [others[2].id] and reads.whole == 1


def _request(app: Starlette) -> Request:
    return Request({"type": "http", "app": app, "method": "GET", "path": "/", "headers": []})


async def test_concurrent_overviews_share_one_computation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    computed: list[bool] = []
    release = asyncio.Event()

    async def compute(request: Request, *, sample: bool = False) -> dict[str, Any]:
        computed.append(sample)
        n = len(computed)
        await release.wait()
        return {"n": n}

    monkeypatch.setattr(views, "compute_overview", compute)
    request = _request(Starlette())
    tabs = [asyncio.create_task(views.overview(request, sample=True, fresh_for=2)) for _ in "abc"]
    polls = [asyncio.create_task(views.overview(request)) for _ in "ab"]
    await asyncio.sleep(0.01)
    tabs[0].cancel()  # a tab closed: the others still get theirs
    release.set()
    assert [await t for t in [*tabs[1:], *polls]] == [{"n": 1}, {"n": 1}, {"n": 2}, {"n": 2}]
    assert computed == [True, False], "one per kind, however many waited"
    # Within the period the streams reuse it; a request afterwards reads afresh.
    assert await views.overview(request, sample=True, fresh_for=2) == {"n": 1}
    assert await views.overview(request) == {"n": 3}
    assert await views.overview(request, sample=True, fresh_for=0) == {"n": 4}
