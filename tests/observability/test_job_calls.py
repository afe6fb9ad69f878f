"""A job's Confluence calls and outcomes, seen where operators look: the ops API's job detail,
the worker's /metrics, the Overview's last-hour rows.

The worker runs a real reaction through the real per-tenant client wiring
(:class:`workers.clients.TenantClients`: a Connect tenant from the tenant store, JWT-signed
calls) against ``httpx.MockTransport`` standing in for Confluence.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.budget.hook import Unmetered
from app.crypto import SecretBox
from app.embedded_redis import free_port
from app.errors import TransientFailure
from app.installations import InstallationStore
from app.metrics import Activity
from app.queue import EventQueue
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.dashboard.helpers import TOKEN, make_event, signed_in
from workers.clients import TenantClients, reactor_options
from workers.context import ReactionContext
from workers.dispatch import JobContext
from workers.main import build_worker
from workers.reactor import Reactor
from workers.routing import Router

SITE = "https://acme.atlassian.net"
PAGE = {
    "id": "1001",
    "status": "current",
    "title": "Runbook",
    "spaceId": "77",
    "version": {"number": 4, "message": "", "authorId": "user-1"},
    "body": {"storage": {"value": "<p>hi</p>", "representation": "storage"}},
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def confluence(seen: list[httpx.Request]) -> httpx.MockTransport:
    """Page 1001 exists; every other page was deleted (404)."""

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/wiki/api/v2/pages/1001":
            return httpx.Response(200, json=PAGE)
        return httpx.Response(404, json={"errors": [{"status": 404, "title": "Not Found"}]})

    return httpx.MockTransport(answer)


async def reactor_for(
    redis: Redis, settings: Settings, http: httpx.AsyncClient
) -> tuple[Reactor, list[str]]:
    tenants = TenantStore(redis, settings)
    await tenants.upsert(Tenant(client_key="site-a", shared_secret="s" * 32, base_url=SITE))
    installations = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    clients = TenantClients(http, settings, tenants, installations, Unmetered())
    router = Router()
    titles: list[str] = []

    @router.on("page.updated", name="read-page")
    async def read_page(event: Event, ctx: ReactionContext) -> None:
        titles.append((await ctx.content()).title)

    return Reactor(router, clients, reactor_options(settings)), titles


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text


async def test_a_processed_job_lists_its_calls_and_the_worker_counts_them(
    redis: Redis, settings: Settings, live_server: Callable[..., Any]
) -> None:
    seen: list[httpx.Request] = []
    port = free_port()
    worker_settings = settings.model_copy(update={"worker_metrics_port": port})
    found, gone = make_event(content_id="1001"), make_event(content_id="2002")
    queue = EventQueue(redis, settings)
    assert await queue.put(found) and await queue.put(gone)
    async with httpx.AsyncClient(transport=confluence(seen)) as http:
        reactor, titles = await reactor_for(redis, settings, http)
        worker = build_worker(worker_settings, burst=True, handle_signals=False, dispatch=reactor)
        try:
            await worker.main()
            metrics = await scrape(port)
        finally:
            await worker.close()
    assert titles == ["Runbook"]
    assert all(r.headers["Authorization"].startswith("JWT ") for r in seen), "signed calls"
    # A call log lives as long as its record: the event retention once done, the dead
    # letter's retention when it may have ended as one.
    done_ttl = await redis.ttl(f"{settings.redis_prefix}calls:{found.id}")
    dead_ttl = await redis.ttl(f"{settings.redis_prefix}calls:{gone.id}")
    assert settings.event_retention_seconds - 60 < done_ttl <= settings.event_retention_seconds
    assert dead_ttl > settings.dead_letter_retention_seconds - 60
    # a deleted page's 404 cannot be fixed by retrying: dead at once, one attempt, one call
    assert [r.url.path for r in seen].count("/wiki/api/v2/pages/2002") == 1

    server = live_server()
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
        ok = (await api.get(f"/api/jobs/{found.id}")).json()
        dead = (await api.get(f"/api/jobs/{gone.id}")).json()
    assert ok["state"] == "done"
    assert [(c["operation"], c["status"]) for c in ok["calls"]] == [
        ("GET /wiki/api/v2/pages/{id}", 200)
    ]
    assert ok["calls"][0]["points"] and ok["calls"][0]["error"] is None
    assert (dead["state"], dead["attempts"]) == ("dead", 1)
    assert dead["reason"].startswith("NotFound")
    assert [c["status"] for c in dead["calls"]] == [404] and dead["calls"][0]["error"]
    browser, _ = signed_in(server.url)
    page = browser.get(f"/dashboard/jobs/{gone.id}").text
    browser.close()
    row = re.search(r"<code>GET /wiki/api/v2/pages/\{id\}</code></td><td>(\d+)</td>", page)
    assert row is not None and row.group(1) == "404", "the job page lists the call"

    op = 'operation="GET /wiki/api/v2/pages/{id}"'
    assert f'reactor_confluence_calls_total{{{op},status="200"}} 1.0' in metrics
    assert f'reactor_confluence_calls_total{{{op},status="404"}} 1.0' in metrics
    assert f"reactor_confluence_call_seconds_count{{{op}}} 2.0" in metrics
    assert 'reactor_job_attempts_total{outcome="done"} 1.0' in metrics
    assert 'reactor_job_attempts_total{outcome="dead"} 1.0' in metrics
    assert 'reactor_job_duration_seconds_count{outcome="done"} 1.0' in metrics
    assert 'reactor_dead_lettered_total{reason="NotFound"} 1.0' in metrics


def overview_row(html: str, name: str) -> str:
    match = re.search(rf"<th>{name}</th><td[^>]*>([^<]*)</td>", html)
    assert match is not None, name
    return match.group(1).strip()


async def test_the_overview_counts_failed_attempts_retries_and_done(
    redis: Redis, settings: Settings, live_server: Callable[..., Any]
) -> None:
    server = live_server()
    browser, _ = signed_in(server.url)
    before = browser.get("/dashboard/").text
    assert (overview_row(before, "Failed attempts"), overview_row(before, "Done")) == ("0", "0")

    flaky, doomed = make_event(content_id="11"), make_event(content_id="12")
    runs: dict[str, int] = {}

    async def dispatch(event: Event, job: JobContext) -> None:
        runs[event.id] = runs.get(event.id, 0) + 1
        if event.id == doomed.id or runs[event.id] == 1:
            raise TransientFailure("Confluence answered 502")

    queue = EventQueue(redis, settings)
    assert await queue.put(flaky) and await queue.put(doomed)
    worker = build_worker(settings, burst=True, handle_signals=False, dispatch=dispatch)
    try:
        await worker.main()
    finally:
        await worker.close()
    assert runs == {flaky.id: 2, doomed.id: 3}

    # flaky: failed once, retried, done; doomed: failed three times, retried twice, dead
    minutes = await Activity(redis, settings.redis_prefix).minutes(3, time.time())
    totals: dict[str, int] = {}
    for _, row in minutes:
        for name, value in row.items():
            totals[name] = totals.get(name, 0) + value
    assert {k: totals.get(k, 0) for k in ("done", "failed", "retry", "dead")} == {
        "done": 1,
        "failed": 4,
        "retry": 3,
        "dead": 1,
    }
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
        hour = (await api.get("/api/status")).json()["hour"]
    assert (hour["done"], hour["failed"], hour["retry"], hour["dead"]) == (1, 4, 3, 1)
    after = browser.get("/dashboard/").text
    browser.close()
    assert (overview_row(after, "Failed attempts"), overview_row(after, "Done")) == ("4", "1")
    assert overview_row(after, "Dead-lettered") == "1"


async def test_events_take_the_pooled_http_clients_in_turn(
    redis: Redis, settings: Settings
) -> None:
    from workers.clients import JOBS_PER_POOL, http_shards

    shards = http_shards(20)
    assert len(shards) == 20 // JOBS_PER_POOL
    for client in shards:
        await client.aclose()
    seen: list[list[httpx.Request]] = [[], []]
    pools = [httpx.AsyncClient(transport=confluence(seen[n]), base_url=SITE) for n in range(2)]
    tenants = TenantStore(redis, settings)
    await tenants.upsert(Tenant(client_key="site-a", shared_secret="s" * 32, base_url=SITE))
    installations = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    clients = TenantClients(pools, settings, tenants, installations, Unmetered())
    log = structlog.get_logger("test")
    for n in range(4):
        event = make_event(content_id="1001", version=n + 1)
        ops = await clients(event, JobContext(event.id, 1, settings, redis, log))
        await ops.get_content("page", "1001")
    assert [len(s) for s in seen] == [2, 2]
    for client in pools:
        await client.aclose()
