"""The ops API over a real socket: what an operator (or the CLI) reads and does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.dashboard.audit import AuditLog
from app.dashboard.heartbeat import Heartbeats
from app.eventlog import EventLog
from app.metrics import Activity, Metrics
from app.queue import EventQueue
from app.settings import Settings
from tests.dashboard.helpers import TOKEN, kill, make_event

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(live_server: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    server = live_server()
    async with httpx.AsyncClient(base_url=server.url, headers=BEARER, timeout=10) as client:
        yield client


async def test_status_counts_queued_events_and_dead_letters(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    queue = EventQueue(redis, settings)
    for n in range(4):
        await queue.put(make_event(content_id=str(100 + n)))
    await kill(redis, settings, make_event(tenant="site-b", content_id="9"), "404 gone")
    status = (await api.get("/api/status")).json()
    assert status["queue"] == {"queued": 4, "running": 0, "deferred": 0}
    assert status["dead_letters"] == 1
    assert status["hour"]["received_total"] == 5
    assert status["hour"]["received"] == {"connect": 5}
    assert status["hour"]["series"]["received"][-1] == 5
    assert status["hour"]["dead"] == 1
    assert [(f["tenant"], f["reason"]) for f in status["failing"]] == [("site-b", "404 gone")]
    assert [(t["tenant"], t["dead"], t["reason"]) for t in status["failing_tenants"]] == [
        ("site-b", 1, "404 gone")
    ]


async def test_job_search_and_detail_mask_secrets(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    first, second = make_event(content_id="501"), make_event(tenant="other", content_id="502")
    queue = EventQueue(redis, settings)
    await queue.put(first)
    await queue.put(second)
    found = (await api.get("/api/jobs", params={"content_id": "501"})).json()["jobs"]
    assert [j["id"] for j in found] == [first.id]
    by_tenant = (await api.get("/api/jobs", params={"tenant": "other"})).json()["jobs"]
    assert [j["id"] for j in by_tenant] == [second.id]
    assert (await api.get("/api/jobs", params={"status": "dead"})).json()["jobs"] == []

    detail = (await api.get(f"/api/jobs/{first.id}")).json()
    assert detail["event"]["content_id"] == "501"
    assert detail["raw"]["sharedSecret"] == "•••"
    assert detail["raw"]["nested"]["access_token"] == "•••"
    assert detail["raw"]["userAccountId"] == "5b10ac8d82e05b22cc7d4ef5"
    text = json.dumps(detail)
    assert "do-not-show" not in text
    assert (await api.get("/api/jobs/ev_nope")).status_code == 404


async def test_job_detail_lists_each_attempt_with_its_error(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    event = make_event(content_id="600")
    await kill(redis, settings, event, "409 conflict after 5 tries")
    detail = (await api.get(f"/api/jobs/{event.id}")).json()
    assert detail["state"] == "dead"
    assert [(a["n"], a["error"]) for a in detail["attempt_list"]] == [
        (1, "409 conflict after 5 tries")
    ]


async def test_retry_all_and_discard_are_done_and_audited(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    events = [make_event(content_id=str(700 + n)) for n in range(3)]
    for event in events:
        await kill(redis, settings, event, "500 server error")
    discarded = await api.post("/api/dead/discard", json={"ids": [events[0].id]})
    assert discarded.json() == {"ok": True, "count": 1, "ids": [events[0].id]}
    retried = await api.post("/api/dead/retry", json={"all": True})
    assert retried.json()["count"] == 2
    log = EventLog(redis, settings)
    states = [(await log.record(e.id)) for e in events]
    assert [s.state if s else None for s in states] == ["discarded", "queued", "queued"]
    again = await api.post("/api/dead/retry", json={"ids": [events[1].id]})
    assert again.status_code == 409
    assert again.json()["not_dead"] == [events[1].id]
    assert (await api.post("/api/dead/retry", json={"ids": []})).status_code == 400
    assert (await api.post("/api/dead/retry", content=b"[1]")).status_code == 400

    audit = (await api.get("/api/audit")).json()["entries"]
    assert [(e["action"], e["outcome"]) for e in audit] == [
        ("dead_letter_retry", "failed"),
        ("dead_letter_retry", "ok"),
        ("dead_letter_discard", "ok"),
    ]
    assert all(e["operator"].startswith("op-") for e in audit)
    assert await AuditLog(redis, settings.redis_prefix).recent(1)


async def test_metrics_are_served_in_prometheus_format(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    await EventQueue(redis, settings).put(make_event(content_id="801"))
    await kill(redis, settings, make_event(content_id="802"), "boom")
    answer = await httpx.AsyncClient(base_url=str(api.base_url)).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'reactor_queue_depth{state="queued"} 1.0' in text
    assert "reactor_dead_letters 1.0" in text
    assert "reactor_budget_remaining_points" in text
    for name in (
        "reactor_events_received_total",
        "reactor_events_rejected_total",
        "reactor_job_duration_seconds",
        "reactor_job_attempts_total",
        "reactor_confluence_calls_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_two_metric_sets_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.events_rejected.labels(source="connect", reason="bad_jwt").inc()
    a.confluence_calls.labels(operation="get_page", status="200").inc(2)
    assert b'reactor_events_rejected_total{reason="bad_jwt",source="connect"} 1.0' in a.render()
    assert b"bad_jwt" not in b.render()


async def test_activity_counters_feed_the_overview(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    activity = Activity(redis, settings.redis_prefix)
    await activity.count("received:forge", 2)
    await activity.count("rejected:connect:bad_jwt")
    await activity.count("done", 3)
    await activity.count("deferred:budget")
    hour = (await api.get("/api/status")).json()["hour"]
    assert hour["received"] == {"forge": 2}
    assert hour["rejected"] == {"connect:bad_jwt": 1}
    assert hour["done"] == 3
    assert hour["deferred"] == {"budget": 1}
    assert hour["series"]["done"][-1] == 3


async def test_workers_page_lists_heartbeats_and_prunes_the_dead(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    beats = Heartbeats(redis, settings.redis_prefix)
    await beats.beat("w1", {"host": "h", "pid": 1, "concurrency": 20, "running": 2})
    await beats.beat("w2", {"host": "h", "pid": 2, "concurrency": 20, "running": 0})
    await redis.delete(beats.key("w2"))  # its TTL ran out
    workers = (await api.get("/api/workers")).json()
    assert [(w["id"], w["running"], w["concurrency"]) for w in workers["workers"]] == [
        ("w1", 2, 20)
    ]
    assert await redis.smembers(beats.index) == {b"w1"}  # type: ignore[misc]


async def test_a_running_worker_reports_itself(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, burst_worker: Any
) -> None:
    seen: list[dict[str, Any]] = []
    worker = burst_worker()
    original = worker.on_startup

    async def startup(ctx: dict[str, Any]) -> None:
        await original(ctx)
        seen.extend(await Heartbeats(redis, settings.redis_prefix).alive())

    worker.on_startup = startup
    await worker.main()
    assert len(seen) == 1
    await worker.close()  # runs on_shutdown, as worker.run() does
    assert seen[0]["concurrency"] == settings.worker_concurrency
    assert seen[0]["pid"] > 0
    assert await Heartbeats(redis, settings.redis_prefix).alive() == []


async def test_last_hour_states_come_from_the_pipeline_records(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    done, waiting, fresh = (make_event(content_id=str(900 + n)) for n in range(3))
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    for event in (done, waiting, fresh):
        await queue.put(event)
    await redis.zrem(f"{settings.redis_prefix}queue", done.id)
    await log.finish(done.id, done.content_key, "done", "")
    await log.mark(waiting.id, "deferred", "budget: hour spent, retry at 14:00")
    hour = (await api.get("/api/status")).json()["hour"]
    assert hour["states"] == {"done": 1, "deferred": 1, "queued": 1}
    assert hour["deferred"] == {"budget": 1}
    assert hour["done"] == 1 and hour["series"]["done"][-1] == 1
    assert hour["sampled"] == 3 and hour["capped"] is False


async def test_live_stream_pushes_the_overview(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    await EventQueue(redis, settings).put(make_event(content_id="1200"))
    async with api.stream("GET", "/dashboard/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        async for line in stream.aiter_lines():
            lines.append(line)
            if line.startswith("data:"):
                break
    assert "event: overview" in lines
    data = json.loads(lines[-1].removeprefix("data:").strip())
    assert data["queue"]["queued"] == 1
    sampled = await Activity(redis, settings.redis_prefix).minutes(1)
    assert sampled[0][1]["depth:queued"] == 1


async def test_pages_redirects_static_files_and_headers(api: httpx.AsyncClient) -> None:
    bare = await api.get("/dashboard")
    assert bare.status_code == 308 and bare.headers["location"] == "/dashboard/"
    css = await api.get("/dashboard/static/app.css")
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text
    assert css.headers["cache-control"] == "public, max-age=3600"
    js = await api.get("/dashboard/static/app.js")
    assert "EventSource" in js.text
    page = await api.get("/dashboard/jobs/ev_unknown")
    assert page.status_code == 404 and "No such job" in page.text
    assert page.headers["cache-control"].startswith("no-cache")
    assert page.headers["x-frame-options"] == "DENY"


async def test_heartbeat_names_the_jobs_a_worker_runs(settings: Settings, redis: Redis) -> None:
    import asyncio

    from app.dashboard import heartbeat

    class FakeArqWorker:  # the attributes of arq's Worker the heartbeat reads
        max_jobs = 5
        jobs_complete = 7
        jobs_failed = 1

        def __init__(self, tasks: dict[str, asyncio.Task[None]]) -> None:
            self.tasks = tasks

    blocker = asyncio.Event()
    task = asyncio.create_task(blocker.wait())
    finished = asyncio.create_task(asyncio.sleep(0))
    await finished
    worker = FakeArqWorker({"ev_running": task, "ev_finished": finished})  # type: ignore[dict-item]
    ctx: dict[str, Any] = {"redis": redis, "settings": settings, "worker": worker}
    await heartbeat.start(ctx)
    try:
        [info] = await Heartbeats(redis, settings.redis_prefix).alive()
    finally:
        await heartbeat.stop(ctx)
        blocker.set()
        await task
    assert (info["running"], info["jobs"], info["done"], info["concurrency"]) == (
        1, ["ev_running"], 7, 5,
    )  # fmt: skip
    assert await Heartbeats(redis, settings.redis_prefix).alive() == []


async def test_events_processed_by_a_real_worker_show_as_done(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, burst_worker: Any
) -> None:
    queue = EventQueue(redis, settings)
    events = [make_event(content_id=str(1300 + n)) for n in range(3)]
    for event in events:
        await queue.put(event)
    assert (await api.get("/api/status")).json()["queue"]["queued"] == 3
    worker = burst_worker()
    await worker.main()
    await worker.close()
    status = (await api.get("/api/status")).json()
    assert status["queue"] == {"queued": 0, "running": 0, "deferred": 0}
    assert status["hour"]["states"] == {"done": 3}
    assert status["hour"]["done"] == 3
    found = (await api.get("/api/jobs", params={"status": "done"})).json()["jobs"]
    assert {j["id"] for j in found} == {e.id for e in events}


async def test_source_is_read_from_the_event_not_from_its_payload(
    settings: Settings, redis: Redis
) -> None:
    import dataclasses
    import time

    from app.dashboard.data import ReadModel

    event = make_event(content_id="1400")
    spoof = dataclasses.replace(
        event, source="forge", raw={"source": "spoof", "inner": {"source": "deeper"}}
    )
    await EventQueue(redis, settings).put(spoof)
    recent = await ReadModel(redis, settings).recent_states(time.time())
    assert recent["sources"] == {"forge": 1}


async def test_source_of_an_event_stored_in_another_key_order(
    settings: Settings, redis: Redis
) -> None:
    import time

    from app.dashboard.data import ReadModel

    event = make_event(content_id="1401")
    await EventQueue(redis, settings).put(event)
    key = f"{settings.redis_prefix}event:{event.id}"
    stored = json.loads(await redis.hget(key, "event"))  # type: ignore[misc]
    reordered = {"raw": {"source": "spoof"}, **{k: v for k, v in stored.items() if k != "raw"}}
    await redis.hset(key, "event", json.dumps(reordered))  # type: ignore[misc]
    recent = await ReadModel(redis, settings).recent_states(time.time())
    assert recent["sources"] == {"connect": 1}
