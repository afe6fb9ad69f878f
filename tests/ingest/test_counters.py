"""Ingest counters: Prometheus on /metrics and the per-minute activity the Overview shows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from app import queue as queue_module
from app import redis as redis_conn
from app.atlassian.connect_jwt import encode_connect_token
from app.embedded_redis import free_port
from app.ingest import Tally
from app.main import create_app
from app.metrics import ACTIVITY_KEEP_SECONDS, Activity, Metrics
from app.queue import EventQueue
from app.settings import Settings
from app.tenants import TenantStore
from tests.connect.conftest import ConnectApp

PAGE = (
    Path(__file__).parents[1] / "fixtures" / "events" / "connect" / "page_updated.json"
).read_bytes()
PATH = "/connect/webhooks/page_updated"
OPERATOR = {"Authorization": "Bearer test-operator-token"}
RECEIVED = "reactor_events_received_total"


def signed(client_key: str, secret: str, path: str = PATH) -> dict[str, str]:
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    return {"Authorization": f"JWT {token}", "content-type": "application/json"}


async def test_accepted_and_rejected_webhooks_reach_metrics_and_the_overview(
    connect_app: ConnectApp, redis: Redis
) -> None:
    client_key, secret = await connect_app.install()
    http = connect_app.client
    forged = signed(client_key, "not-the-secret-" + "x" * 40)
    assert (await http.post(PATH, content=PAGE, headers=forged)).status_code == 401
    bad = await http.post(PATH, content=b"{nope", headers=signed(client_key, secret))
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_payload")
    for _ in range(2):  # the second is a duplicate: accepted, not stored again
        ok = await http.post(PATH, content=PAGE, headers=signed(client_key, secret))
        assert ok.status_code == 204, ok.text

    metrics = (await http.get("/metrics")).text
    assert 'reactor_events_received_total{source="connect"} 4.0' in metrics
    assert 'reactor_events_accepted_total{source="connect"} 2.0' in metrics
    assert 'reactor_events_rejected_total{reason="bad_signature",source="connect"} 1.0' in metrics
    assert 'reactor_events_rejected_total{reason="invalid_payload",source="connect"} 1.0' in metrics

    hour = (await http.get("/api/status", headers=OPERATOR)).json()["hour"]
    assert hour["rejected"] == {"connect:bad_signature": 1, "connect:invalid_payload": 1}
    assert hour["received"] == {"connect": 4}
    totals: dict[str, int] = {}
    for _, row in await Activity(redis, connect_app.settings.redis_prefix).minutes(2):
        for name, value in row.items():
            totals[name] = totals.get(name, 0) + value
    assert totals["accepted:connect"] == 2 and totals["duplicate:connect"] == 1
    keys = [
        k async for k in redis.scan_iter(match=f"{connect_app.settings.redis_prefix}activity:*")
    ]
    assert keys
    for key in keys:
        assert 0 < await redis.ttl(key) <= ACTIVITY_KEEP_SECONDS


async def test_redis_down_is_503_and_counted_as_a_rejection(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    dead = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0")
    connect_app.app.state.queue = EventQueue(dead, connect_app.settings)
    resp = await connect_app.client.post(PATH, content=PAGE, headers=signed(client_key, secret))
    await dead.aclose()
    assert (resp.status_code, resp.headers["retry-after"]) == (503, "5")
    assert resp.json()["error"] == "queue_unavailable"
    metrics = (await connect_app.client.get("/metrics")).text
    assert (
        'reactor_events_rejected_total{reason="queue_unavailable",source="connect"} 1.0' in metrics
    )


async def test_a_hung_tenant_store_is_answered_within_one_ingest_bound(
    settings: Settings, redis: Redis, silent_server: int
) -> None:
    """A stalled Redis: 503 after the bound, not after a second bound spent counting it."""
    bound = 0.5
    settings = settings.model_copy(update={"ingest_timeout_seconds": bound})
    app = create_app(settings, redis=redis)
    hung = redis_conn.connect(f"redis://127.0.0.1:{silent_server}/0")
    async with app.router.lifespan_context(app):
        app.state.redis = hung  # the per-minute counters live there too
        app.state.tenants = TenantStore(hung, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            started = time.monotonic()
            resp = await http.post(PATH, content=PAGE, headers=signed("site-x", "s" * 40))
            elapsed = time.monotonic() - started
    await hung.aclose()
    assert (resp.status_code, resp.json()["error"]) == (503, "tenant_store_unavailable")
    assert bound <= elapsed < 1.5 * bound


async def test_forge_refusals_are_counted_under_their_source(connect_app: ConnectApp) -> None:
    resp = await connect_app.client.post("/forge/events", json={"eventType": "x"})
    assert resp.status_code == 401
    metrics = (await connect_app.client.get("/metrics")).text
    assert 'reactor_events_received_total{source="forge"} 1.0' in metrics
    assert (
        f'reactor_events_rejected_total{{reason="{resp.json()["error"]}",source="forge"}} 1.0'
        in metrics
    )


def test_the_queue_keeps_activity_as_long_as_the_dashboard_reads_it() -> None:
    assert queue_module.ACTIVITY_KEEP_SECONDS == ACTIVITY_KEEP_SECONDS


def test_payload_fixture_is_json() -> None:
    assert json.loads(PAGE)["page"]


def test_hot_path_counts_reach_the_registry_at_each_render() -> None:
    metrics = Metrics()
    received = Tally(metrics.events_received.labels("connect"))
    metrics.before_render.append(received.flush)
    for _ in range(3):
        received.inc()
    assert metrics.registry.get_sample_value(RECEIVED, {"source": "connect"}) == 0.0
    assert b'reactor_events_received_total{source="connect"} 3.0' in metrics.render()
    received.inc(2)
    assert b'reactor_events_received_total{source="connect"} 5.0' in metrics.render()
    assert b'reactor_events_received_total{source="connect"} 5.0' in metrics.render()
