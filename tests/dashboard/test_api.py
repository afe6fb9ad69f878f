"""The ops API over a real socket: what an operator (or the CLI) reads and does."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from app.dashboard import api as ops_api
from app.dashboard.audit import AuditLog
from app.dashboard.data import MAX_PAGE
from app.dashboard.heartbeat import Heartbeats
from app.eventlog import EventLog
from app.masking import MASK, mask_secrets
from app.metrics import Activity, Metrics
from app.queue import EventQueue
from app.settings import Settings
from tests.dashboard.helpers import (
    TOKEN,
    kill,
    link_to,
    listed_ids,
    make_event,
    send_partly,
    signed_in,
)

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
    await queue.put(make_event(content_id="100", version=2))  # in line behind version 1
    await kill(redis, settings, make_event(tenant="site-b", content_id="9"), "404 gone")
    status = (await api.get("/api/status")).json()
    assert status["queue"].pop("oldest_due_seconds") <= 5  # put just now
    assert status["queue"] == {"queued": 4, "running": 0, "deferred": 0, "waiting": 1}
    assert status["dead_letters"] == 1
    assert status["hour"]["received_total"] == 6
    assert status["hour"]["received"] == {"connect": 6}
    assert status["hour"]["series"]["received"][-1] == 6
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
    unknown = await api.post("/api/dead/retry", json={"all": True, "type": "page_edited"})
    assert unknown.status_code == 400 and "type must be an event type" in unknown.text
    none_of_them = await api.post("/api/dead/retry", json={"all": True, "type": "label_added"})
    assert none_of_them.json()["count"] == 0, "a Connect name is the same type (none dead)"
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
    not_an_object = await api.post(
        "/api/dead/retry", content=b"[1]", headers={"Content-Type": "application/json"}
    )
    assert not_an_object.status_code == 400

    audit = (await api.get("/api/audit")).json()["entries"]
    assert [(e["action"], e["outcome"]) for e in audit] == [
        ("dead_letter_retry", "failed"),
        ("dead_letter_retry", "ok"),
        ("dead_letter_discard", "ok"),
        ("dead_letter_retry", "ok"),  # the one that matched none
    ]
    assert all(e["operator"].startswith("op-") for e in audit)
    assert await AuditLog(redis, settings.redis_prefix).recent(1)


async def test_an_action_naming_thousands_of_ids_keeps_a_bounded_audit_entry(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    dead = make_event(content_id="990")
    await kill(redis, settings, dead, "500 server error")
    gone = [f"ev_{n:032x}" for n in range(2500)]
    answer = await api.post("/api/dead/discard", json={"ids": [*gone, dead.id]})
    assert answer.status_code == 200
    assert (answer.json()["count"], len(answer.json()["unknown"])) == (1, 2500)
    [entry] = await AuditLog(redis, settings.redis_prefix).recent(1)
    assert entry.detail["ids"] == [dead.id] and entry.detail["count"] == 1
    assert entry.detail["unknown"] == gone[:100] and entry.detail["unknown_count"] == 2500
    assert len(json.dumps(entry.detail)) < 10_000


async def test_an_action_tells_unknown_ids_from_events_that_are_not_dead(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    queue = EventQueue(redis, settings)
    alive = make_event(content_id="991")
    await queue.put(alive)  # queued: an event we hold, not a dead letter
    unknown = await api.post("/api/dead/retry", json={"ids": ["ev_mistyped"]})
    assert unknown.status_code == 404
    assert unknown.json()["unknown"] == ["ev_mistyped"] and "not_dead" not in unknown.json()
    assert "no event we hold" in unknown.json()["detail"]
    both = await api.post("/api/dead/discard", json={"ids": ["ev_mistyped", alive.id]})
    assert both.status_code == 409
    assert (both.json()["unknown"], both.json()["not_dead"]) == (["ev_mistyped"], [alive.id])
    assert (await queue.get(alive.id)) is not None  # a discard never touches a live event


async def test_a_misspelt_query_parameter_is_refused_not_ignored(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    await EventQueue(redis, settings).put(make_event(content_id="992"))
    for path in ("/api/jobs?tenat=acme", "/api/dead?limit=5&curser=x", "/api/audit?lmit=3"):
        answer = await api.get(path)
        assert answer.status_code == 400, path
        assert answer.json()["error"] == "invalid_request"
        assert "unknown query parameter" in answer.json()["detail"]
    assert (await api.get("/api/jobs?tenant=acme&limit=5")).status_code == 200


async def test_the_queue_s_lag_is_the_oldest_due_job_not_running(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    """Workers missing or behind show as a queue whose oldest due job only ages: the status,
    the overview's Queued tile and a gauge carry how long it has been due."""
    queue = EventQueue(redis, settings)
    events = [make_event(content_id=str(1400 + n)) for n in range(3)]
    for event in events:
        await queue.put(event)
    now_ms = int(time.time() * 1000)
    for event, age in zip(events, (300, 200, 100), strict=True):
        await redis.zadd(queue.keys.queue, {event.id: now_ms - age * 1000})
    await redis.zadd(queue.keys.queue, {"ev_later": now_ms + 600_000})  # deferred: not due
    running = f"arq:in-progress:{events[0].id}"  # the oldest is being run: not lag
    await redis.set(running, b"1", px=60_000)
    try:
        status = (await api.get("/api/status")).json()
        lag = status["queue"].pop("oldest_due_seconds")
        assert 199 <= lag <= 205
        assert status["queue"] == {"queued": 2, "running": 1, "deferred": 1, "waiting": 0}
        text = (await api.get("/metrics")).text
        line = next(x for x in text.splitlines() if x.startswith("reactor_queue_oldest_due_"))
        assert 199 <= float(line.split()[-1]) <= 205
        page = (await api.get("/dashboard/")).text
        assert re.search(r'data-live="queue.oldest_due_seconds">(\d+)<', page)
        await redis.delete(running)
        assert 299 <= (await api.get("/api/status")).json()["queue"]["oldest_due_seconds"] <= 305
    finally:
        await redis.delete(running)


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
    assert "reactor_redis_up 1.0" in text
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
        jobs_retried = 12  # the pipeline's retries and waits, which arq does not call failed

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
    assert (info["run_again"], info["failed"]) == (12, 1)
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
    assert status["queue"] == {
        "queued": 0, "running": 0, "deferred": 0, "waiting": 0, "oldest_due_seconds": 0,
    }  # fmt: skip
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


@pytest.mark.parametrize(
    "body",
    [
        {"ids": ["x"], "all": True},  # both: never read as "everything"
        {"ids": [], "all": True},
        {"all": True, "tenant": None},  # null is no filter to guess at
        {"all": True, "tenant": ""},
        {"all": "yes"},
        {"ids": ["x"], "tenant": "site-a"},  # filters narrow "all" only
        {"all": True, "tenants": "site-a"},  # a misspelt filter is not ignored
        {"ids": [""]},
        {"ids": "x"},
    ],
)
async def test_dead_letter_actions_refuse_bodies_they_would_have_to_guess_at(
    api: httpx.AsyncClient, settings: Settings, redis: Redis, body: dict[str, Any]
) -> None:
    event = make_event(content_id="1400")
    await kill(redis, settings, event, "boom")
    for action in ("retry", "discard"):
        refused = await api.post(f"/api/dead/{action}", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_request"
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None


async def test_all_dead_letters_of_one_tenant_or_type(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    mine = make_event(tenant="site-a", content_id="1601")
    other_tenant = make_event(tenant="site-b", content_id="1602")
    other_type = dataclasses.replace(
        make_event(tenant="site-a", content_id="1603"), id="ev_other_type", type="label.added"
    )
    for event in (mine, other_tenant, other_type):
        await kill(redis, settings, event, "boom")
    body = {"all": True, "tenant": "site-a", "type": "page.updated"}
    done = (await api.post("/api/dead/discard", json=body)).json()
    assert done["ok"] and done["ids"] == [mine.id]
    twice = (await api.post("/api/dead/retry", json={"ids": [other_tenant.id] * 2})).json()
    assert twice == {"ok": True, "count": 1, "ids": [other_tenant.id]}
    log = EventLog(redis, settings)
    states = [await log.record(e.id) for e in (mine, other_tenant, other_type)]
    assert [s.state if s else None for s in states] == ["discarded", "queued", "dead"]
    (entry, *_) = (await api.get("/api/audit")).json()["entries"]
    assert (entry["action"], entry["target"]) == (
        "dead_letter_retry",
        other_tenant.id,
    )


async def test_action_bodies_must_be_json_and_bounded(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    event = make_event(content_id="1500")
    await kill(redis, settings, event, "boom")
    plain = await api.post(
        "/api/dead/retry",
        content=json.dumps({"ids": [event.id]}),
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 415
    assert plain.json()["error"] == "unsupported_media_type"
    padded = {"ids": [event.id], "pad": "x" * ops_api.MAX_JSON_BYTES}
    big = await api.post("/api/dead/discard", json=padded)
    assert big.status_code == 413
    assert big.json()["error"] == "payload_too_large"
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None
    assert (await api.get("/api/audit")).json()["entries"] == []  # nothing was done

    # A declared 400 MB: refused at once, while only a sliver of it has been sent.
    head = (
        f"POST /api/dead/retry HTTP/1.1\nHost: reactor.test\nAuthorization: Bearer {TOKEN}\n"
        "Content-Type: application/json\nContent-Length: 400000000\n"
    )
    status, body = await asyncio.to_thread(
        send_partly, str(api.base_url).rstrip("/"), head, b'{"all": true, "pad": "' + b"x" * 4096
    )
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/audit?limit=abc", "limit must be a whole number from 1 to 5000"),
        ("/api/audit?limit=99999999999999999999", "limit must be a whole number from 1 to 5000"),
        ("/api/audit?limit=0", "limit must be a whole number from 1 to 5000"),
        ("/api/audit?limit=-3", "limit must be a whole number from 1 to 5000"),
        ("/api/audit?limit=%C2%B2", "limit must be a whole number from 1 to 5000"),  # "²"
        ("/api/jobs?limit=abc", f"limit must be a whole number from 1 to {MAX_PAGE}"),
        ("/api/jobs?limit=501", f"limit must be a whole number from 1 to {MAX_PAGE}"),
        ("/api/dead?limit=1e3", f"limit must be a whole number from 1 to {MAX_PAGE}"),
        ("/api/jobs?cursor=abc", "cursor must be the next_cursor of a previous page, as given"),
        ("/api/dead?cursor=12:", "cursor must be the next_cursor of a previous page, as given"),
        ("/api/jobs?status=dead%27", "status must be one of"),
        ("/api/jobs?type=page_edited", "type must be an event type"),
    ],
)
async def test_bad_query_parameters_answer_400(
    api: httpx.AsyncClient, path: str, detail: str
) -> None:
    answer = await api.get(path)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert answer.json()["detail"].startswith(detail)


async def test_audit_limit_is_bounded_and_applied(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    log = AuditLog(redis, settings.redis_prefix)
    for n in range(3):
        await log.record("op-x", f"action_{n}")
    entries = (await api.get("/api/audit", params={"limit": "2"})).json()["entries"]
    assert [e["action"] for e in entries] == ["action_2", "action_1"]
    assert len((await api.get("/api/audit", params={"limit": "5000"})).json()["entries"]) == 3
    over = await api.get("/api/audit", params={"limit": "5001"})
    assert over.status_code == 400
    assert over.json()["detail"] == "limit must be a whole number from 1 to 5000"


async def _pages(api: httpx.AsyncClient, path: str, key: str, **params: str) -> list[list[str]]:
    """The ids of every page of ``path``, following ``next_cursor`` to the end."""
    pages: list[list[str]] = []
    cursor = ""
    while True:
        answer = await api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        data = answer.json()
        pages.append([row["id"] for row in data[key]])
        if data["next_cursor"] is None:
            return pages
        cursor = data["next_cursor"]
        assert len(pages) < 50


async def test_jobs_page_through_every_record(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    queue = EventQueue(redis, settings)
    events = [make_event(content_id=str(2000 + n)) for n in range(130)]
    for event in events:
        await queue.put(event)
    index = f"{settings.redis_prefix}events"
    # Give them distinct arrival times, and two of them the same one (ties are ordered by id).
    for n, event in enumerate(events):
        await redis.zadd(index, {event.id: 1_700_000_000_000 + n})
    await redis.zadd(index, {events[60].id: 1_700_000_000_061})
    newest_first = await redis.zrevrange(index, 0, -1)
    expected = [i.decode() for i in newest_first]

    everything = (await api.get("/api/jobs", params={"limit": "130"})).json()
    assert [j["id"] for j in everything["jobs"]] == expected
    assert everything["next_cursor"] is None
    assert len((await api.get("/api/jobs")).json()["jobs"]) == 100  # the default page

    # Pages of 23: the third ends between the two ids sharing one arrival time.
    assert expected.index(events[60].id) == 69 - (events[60].id > events[61].id)
    pages = await _pages(api, "/api/jobs", "jobs", limit="23")
    assert [len(p) for p in pages] == [23] * 5 + [15]
    assert [i for p in pages for i in p] == expected
    assert len({i for p in pages for i in p}) == 130

    # Filtered (tenant by substring) pages page too.
    other = [make_event(tenant="site-other", content_id=str(2500 + n)) for n in range(5)]
    for event in other:
        await queue.put(event)
    pages = await _pages(api, "/api/jobs", "jobs", limit="2", tenant="OTHER")
    assert sorted(i for p in pages for i in p) == sorted(e.id for e in other)
    assert all(len(p) <= 2 for p in pages)

    # New arrivals between pages neither repeat rows nor push older ones out of the walk.
    first = (await api.get("/api/jobs", params={"limit": "10"})).json()
    for n in range(3):
        await queue.put(make_event(tenant="late", content_id=str(2600 + n)))
    second = await api.get("/api/jobs", params={"limit": "10", "cursor": first["next_cursor"]})
    newest = [j["id"] for j in first["jobs"]] + [j["id"] for j in second.json()["jobs"]]
    everything_now = (await api.get("/api/jobs", params={"limit": "500"})).json()["jobs"]
    assert newest == [j["id"] for j in everything_now][3:23]


async def dead_letters(
    redis: Redis, settings: Settings, count: int, first_content: int
) -> list[str]:
    """``count`` dead letters, one death a millisecond apart; their ids, newest death first."""
    events = [make_event(content_id=str(first_content + n)) for n in range(count)]
    for event in events:
        await kill(redis, settings, event, "gone")
    dlq = f"{settings.redis_prefix}dlq"
    first_death = int(time.time() * 1000) - 60_000
    for n, event in enumerate(events):
        await redis.zadd(dlq, {event.id: first_death + n})
    return [e.id for e in reversed(events)]


async def test_dead_letters_page_through_while_some_are_retried(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    expected = await dead_letters(redis, settings, 205, first_content=3000)

    everything = (await api.get("/api/dead", params={"limit": "300"})).json()
    assert everything["total"] == 205
    assert [d["id"] for d in everything["items"]] == expected
    assert everything["next_cursor"] is None

    first = (await api.get("/api/dead", params={"limit": "50"})).json()
    assert [d["id"] for d in first["items"]] == expected[:50]
    retried = await api.post("/api/dead/retry", json={"ids": expected[:50]})
    assert retried.json()["count"] == 50  # the first page leaves the dead-letter index
    second = await api.get("/api/dead", params={"limit": "50", "cursor": first["next_cursor"]})
    assert [d["id"] for d in second.json()["items"]] == expected[50:100]
    rest = await _pages(api, "/api/dead", "items", limit="100")
    assert [i for p in rest for i in p] == expected[50:]


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def _html_pages(get: Callable[[str], Any], url: str) -> list[tuple[str, list[str]]]:
    """(address, listed ids) of every page from ``url``, following "Next page" to the end."""
    pages: list[tuple[str, list[str]]] = []
    while True:
        answer = await get(url)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        pages.append((url, listed_ids(answer.text)))
        after = link_to(answer.text, "Next page")
        # "First page" on every page but the first, to the same search without a cursor.
        first = link_to(answer.text, "First page")
        if len(pages) == 1:
            assert first is None
        else:
            assert first is not None and "cursor" not in _query(first)
            assert _query(first) == {k: v for k, v in _query(url).items() if k != "cursor"}
        if after is None:
            return pages
        url = after
        assert len(pages) < 20


async def test_jobs_html_page_pages_through_every_match_keeping_the_filters(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    wanted = [make_event(tenant="site-paged", content_id=str(4000 + n)) for n in range(130)]
    noise = [make_event(tenant="site-noise", content_id=str(4200 + n)) for n in range(20)]
    finished = [make_event(tenant="site-paged", content_id=str(4300 + n)) for n in range(20)]
    for event in [*wanted, *noise, *finished]:
        await queue.put(event)
    for event in finished:
        await redis.zrem(f"{settings.redis_prefix}queue", event.id)
        await log.finish(event.id, event.content_key, "done", "")
    # Interleaved arrival times: matches and non-matches alternate through the index.
    index = f"{settings.redis_prefix}events"
    mixed = [e for trio in itertools.zip_longest(wanted, noise, finished) for e in trio if e]
    for n, event in enumerate(mixed):
        await redis.zadd(index, {event.id: 1_700_000_000_000 + n})
    wanted_ids = {e.id for e in wanted}
    newest_first = [i.decode() for i in await redis.zrevrange(index, 0, -1)]
    expected = [i for i in newest_first if i in wanted_ids]

    pages = await _html_pages(api.get, "/dashboard/jobs?tenant=PAGED&status=queued")
    assert [len(ids) for _, ids in pages] == [100, 30]  # 100 a page by default
    assert [i for _, ids in pages for i in ids] == expected  # none repeated, none skipped
    for url, _ in pages[1:]:
        query = _query(url)
        assert query["tenant"] == ["PAGED"] and query["status"] == ["queued"]
        assert set(query) == {"tenant", "status", "cursor"}
    second = (await api.get(pages[1][0])).text
    assert 'name="tenant" value="PAGED"' in second  # the search form still shows the filters
    assert '<option value="queued" selected>' in second
    first = link_to(second, "First page")
    assert first is not None
    assert listed_ids((await api.get(first)).text) == pages[0][1]

    # "Show latest" (no filter) with a chosen page size: every record, each once.
    pages = await _html_pages(api.get, "/dashboard/jobs?all=1&limit=70")
    assert [len(ids) for _, ids in pages] == [70, 70, 30]
    assert [i for _, ids in pages for i in ids] == newest_first
    for url, _ in pages[1:]:
        assert _query(url)["all"] == ["1"] and _query(url)["limit"] == ["70"]


async def test_dead_html_page_pages_through_and_its_actions_still_work(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    expected = await dead_letters(redis, settings, 205, first_content=5000)
    client, csrf = await asyncio.to_thread(signed_in, str(api.base_url).rstrip("/"))

    async def get(url: str) -> httpx.Response:
        return await asyncio.to_thread(client.get, url)

    pages = await _html_pages(get, "/dashboard/dead")
    assert [len(ids) for _, ids in pages] == [200, 5]  # 200 a page by default
    assert [i for _, ids in pages for i in ids] == expected
    pages = await _html_pages(get, "/dashboard/dead?limit=90")
    assert [len(ids) for _, ids in pages] == [90, 90, 25]
    assert [i for _, ids in pages for i in ids] == expected
    assert all(_query(url)["limit"] == ["90"] for url, _ in pages)

    # Bulk actions from a later page: its rows are the ones selectable; "all" means all.
    second = (await get(pages[1][0])).text
    assert "Retry all (205)…" in second
    boxes = re.findall(r'<input type="checkbox" name="id" value="([^"]+)"', second)
    assert boxes == expected[90:180]
    chosen = {"csrf": csrf, "scope": "selected", "id": boxes[:2]}
    confirm = await asyncio.to_thread(client.post, "/dashboard/dead/retry", data=chosen)
    assert confirm.status_code == 200 and "Confirm: retry" in confirm.text
    done = await asyncio.to_thread(
        client.post, "/dashboard/dead/retry", data={**chosen, "confirm": "yes"}
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard/dead?done=retry&count=2"
    assert notice_of((await get(done.headers["location"])).text) == "retry: 2 dead letter(s)"
    partly = {"csrf": csrf, "scope": "selected", "id": [boxes[0], boxes[2]], "confirm": "yes"}
    mixed = await asyncio.to_thread(client.post, "/dashboard/dead/retry", data=partly)
    assert mixed.headers["location"] == "/dashboard/dead?done=retry&count=1&skipped=1"
    notice = notice_of((await get(mixed.headers["location"])).text)
    assert (
        notice
        == "retry: 1 dead letter(s); 1 id(s) skipped: not dead letters (any more, or unknown)"
    )
    retried = [*boxes[:2], boxes[2]]
    for event_id in boxes[:2]:
        assert await redis.zscore(f"{settings.redis_prefix}dlq", event_id) is None
    pages = await _html_pages(get, "/dashboard/dead?limit=90")
    assert [i for _, ids in pages for i in ids] == [i for i in expected if i not in retried]


def notice_of(page: str) -> str | None:
    """The text of the Dead letters page's status notice, if it shows one."""
    found = re.search(r'<p class="notice" role="status">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None


async def test_dead_letters_notice_is_worded_by_the_page_never_taken_from_the_link(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    event = make_event(content_id="7007")
    await kill(redis, settings, event, "500: boom")
    client, csrf = await asyncio.to_thread(signed_in, str(api.base_url).rstrip("/"))

    async def notice(query: str) -> str | None:
        page = await asyncio.to_thread(client.get, f"/dashboard/dead?{query}")
        assert page.status_code == 200
        assert "evil.example" not in page.text and "rotated" not in page.text
        return notice_of(page.text)

    phishing = urlencode({"done": "Session expired: get the new token at https://evil.example"})
    assert await notice(phishing) is None
    for query in ("done=retry&count=x", "done=retry&count=%C2%B2", "done=retry-later", "done="):
        assert await notice(query) is None, query
    assert await notice("done=discard-failed&closing=2") == (
        "discard failed; 2 id(s) still being closed by a worker: try again"
    )
    nothing = await asyncio.to_thread(
        client.post, "/dashboard/dead/retry", data={"csrf": csrf, "scope": "selected"}
    )
    assert nothing.headers["location"] == "/dashboard/dead?done=nothing"
    assert await notice("done=nothing") == "Nothing selected."
    one = {"csrf": csrf, "one": event.id, "confirm": "yes"}
    discarded = await asyncio.to_thread(client.post, "/dashboard/dead/discard", data=one)
    assert discarded.headers["location"] == "/dashboard/dead?done=discard&count=1"
    again = await asyncio.to_thread(client.post, "/dashboard/dead/discard", data=one)
    assert again.headers["location"] == "/dashboard/dead?done=discard-failed&skipped=1"
    assert await notice(urlsplit(again.headers["location"]).query) == (
        "discard failed; 1 id(s) skipped: not dead letters (any more, or unknown)"
    )


@pytest.mark.parametrize(
    ("path", "detail", "first"),
    [
        ("/dashboard/jobs?all=1&cursor=abc", "cursor must be the next_cursor", "?all=1"),
        ("/dashboard/jobs?tenant=x&limit=0", "limit must be a whole number from 1 to", "?tenant=x"),
        ("/dashboard/jobs?all=1&limit=501", "limit must be a whole number from 1 to", "?all=1"),
        ("/dashboard/jobs?status=dead%27", "status must be one of", "?all=1"),
        ("/dashboard/dead?cursor=12:", "cursor must be the next_cursor", ""),
        ("/dashboard/dead?cursor=%00", "cursor must be the next_cursor", ""),
        ("/dashboard/dead?limit=%C2%B2", "limit must be a whole number from 1 to", ""),
    ],
)
async def test_bad_paging_parameters_on_pages_answer_a_400_page(
    api: httpx.AsyncClient, path: str, detail: str, first: str
) -> None:
    answer = await api.get(path)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert f'<p class="error" role="alert">Bad request: {detail}' in answer.text
    assert link_to(answer.text, "the first page") == path.partition("?")[0] + first
    assert 'aria-current="page"' in answer.text  # the usual page, navigation included


async def test_missing_job_names_the_configured_retention(
    live_server: Callable[..., Any], settings: Settings
) -> None:
    from app.main import create_app

    for events, dead, said in [
        (3 * 86400, 14 * 86400, "event records are kept 3 days after their last change, "
         "dead letters 14 days"),
        (7200, 90 * 60, "event records are kept 2 hours after their last change, "
         "dead letters 2 hours"),
    ]:  # fmt: skip
        tuned = settings.model_copy(
            update={"event_retention_seconds": events, "dead_letter_retention_seconds": dead}
        )
        server = live_server(create_app(tuned))
        async with httpx.AsyncClient(base_url=server.url, headers=BEARER) as client:
            answer = await client.get("/api/jobs/ev_nope")
        assert answer.status_code == 404
        assert answer.json() == {"error": "not_found", "detail": f"no such job: {said}"}


SECRET_PAYLOAD = {
    "auth": {"bearer": "secret-bearer-value"},
    "Passphrase": "secret-passphrase-value",
    "credentials": {"user": "bot", "pass": "secret-credential-value"},
    "connection": {"private key": "secret-private-key", "sessionId": "secret-session-id"},
    "headers": {"Cookie": "sid=secret-cookie", "X-Hub-Signature-256": "secret-signature"},
    "authToken": "secret-auth-token",
    "basic_auth": "secret-basic-auth",
    "page": {"id": 42, "title": "Quarterly plan", "spaceKey": "OPS"},
    "authorAccountId": "5b10ac8d82e05b22cc7d4ef5",
    "key": "OPS",
    "clientKey": "client-key-is-not-secret",
    "publicKey": "public-key-is-not-secret",
}


def test_mask_secrets_covers_credential_style_keys_and_nothing_ordinary() -> None:
    masked = mask_secrets(SECRET_PAYLOAD)
    assert "secret-" not in json.dumps(masked)
    assert masked["auth"] == masked["Passphrase"] == masked["credentials"] == MASK
    assert masked["connection"] == {"private key": MASK, "sessionId": MASK}
    assert masked["headers"] == {"Cookie": MASK, "X-Hub-Signature-256": MASK}
    for ordinary in ("page", "authorAccountId", "key", "clientKey", "publicKey"):
        assert masked[ordinary] == SECRET_PAYLOAD[ordinary]
    # No field of the recorded Confluence, Connect and Forge payloads is masked, but the
    # Forge context token.
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    for path in sorted(fixtures.rglob("*.json")):
        if path.name == "connect-jwt-interop-vectors.json":
            continue  # JWT test vectors: secrets on purpose
        payload = json.loads(path.read_text())
        if "contextToken" in json.dumps(payload):
            payload = _without(payload, "contextToken")
        assert mask_secrets(payload) == payload, path


def _without(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, name) for k, v in value.items() if k != name}
    if isinstance(value, list):
        return [_without(v, name) for v in value]
    return value


async def test_job_detail_and_page_mask_credential_style_keys(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    event = dataclasses.replace(make_event(content_id="1600"), raw=SECRET_PAYLOAD)
    await EventQueue(redis, settings).put(event)
    detail = (await api.get(f"/api/jobs/{event.id}")).json()
    assert "secret-" not in json.dumps(detail)
    assert detail["raw"]["auth"] == detail["raw"]["Passphrase"] == MASK
    assert detail["raw"]["page"]["title"] == "Quarterly plan"
    assert detail["raw"]["authorAccountId"] == "5b10ac8d82e05b22cc7d4ef5"
    client, _ = await asyncio.to_thread(signed_in, str(api.base_url).rstrip("/"))
    page = await asyncio.to_thread(client.get, f"/dashboard/jobs/{event.id}")
    assert page.status_code == 200
    assert "secret-" not in page.text
    assert "Quarterly plan" in page.text and "5b10ac8d82e05b22cc7d4ef5" in page.text


async def test_tenants_are_listed_after_the_secret_key_is_rotated(
    live_server: Callable[..., Any], settings: Settings, redis: Redis
) -> None:
    """The listing decrypts no secret: a tenant sealed with a key since retired from
    REACTOR_SECRET_KEY is still listed (with its clientKey), not a 503."""
    from cryptography.fernet import Fernet
    from pydantic import SecretStr

    from app.dashboard.cli import format_tenants
    from app.main import create_app
    from app.tenants import Tenant, TenantStore

    site = Tenant("ck-sealed-long-ago", "s" * 40, "https://old.atlassian.net/wiki")
    await TenantStore(redis, settings).upsert(site, issued_at=1000)
    new_key = SecretStr(Fernet.generate_key().decode())
    rotated = settings.model_copy(update={"secret_key": new_key})
    server = live_server(create_app(rotated))
    async with httpx.AsyncClient(base_url=server.url, headers=BEARER, timeout=10) as client:
        listed = await client.get("/api/tenants")
    assert listed.status_code == 200, listed.text
    rows = listed.json()["connect"]
    assert [(r["client_key"], r["status"]) for r in rows] == [("ck-sealed-long-ago", "installed")]
    assert "shared_secret" not in rows[0]
    assert "clientKey ck-sealed-long-ago" in format_tenants(listed.json())


async def test_jobs_are_filtered_by_type_in_either_vocabulary(
    api: httpx.AsyncClient, settings: Settings, redis: Redis
) -> None:
    """Connect's ``page_updated`` and Forge's ``avi:confluence:updated:page`` name the same
    type as ``page.updated`` (the dead-letter actions took them; the job search matched
    nothing)."""
    event = make_event(content_id="4242")
    await EventQueue(redis, settings).put(event)
    for name in ("page.updated", "page_updated", "avi:confluence:updated:page"):
        found = await api.get("/api/jobs", params={"type": name})
        assert found.status_code == 200, found.text
        assert [row["id"] for row in found.json()["jobs"]] == [event.id], name
