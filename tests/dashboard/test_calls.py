"""Per-job Confluence call records, written through the real client's log lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog
from redis.asyncio import Redis

from app.budget.hook import Unmetered
from app.confluence.client import ConfluenceClient
from app.confluence.errors import ConfluenceError
from app.confluence.site import Site
from app.dashboard.calls import CallRecorder, operation, read_calls
from app.metrics import Metrics
from app.queue import EventQueue
from app.settings import Settings
from tests.dashboard.helpers import TOKEN, make_event

PAGE = {
    "id": "123",
    "status": "current",
    "title": "Runbook",
    "spaceId": "77",
    "version": {"number": 4},
    "body": {"storage": {"value": "<p>hi</p>", "representation": "storage"}},
}


def confluence(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/pages/123"):
        return httpx.Response(200, json=PAGE)
    return httpx.Response(404, json={"errors": [{"status": 404, "title": "Not Found"}]})


def test_operation_templates_ids() -> None:
    assert operation("get", "https://a.net/wiki/api/v2/pages/123?body-format=storage") == (
        "GET /wiki/api/v2/pages/{id}"
    )
    assert operation("PUT", "/wiki/api/v2/pages/9/labels") == "PUT /wiki/api/v2/pages/{id}/labels"


def test_attachment_ids_are_templated_like_the_others() -> None:
    """Attachment ids carry an ``att`` prefix (``get_attachment`` puts it in the path): each
    read made a new ``operation`` series, for as long as the worker ran."""
    assert operation("GET", "https://a.net/wiki/api/v2/attachments/att1000") == (
        "GET /wiki/api/v2/attachments/{id}"
    )
    assert operation("GET", "/wiki/rest/api/content/ATT77/child/attachment") == (
        "GET /wiki/rest/api/content/{id}/child/attachment"
    )
    assert operation("GET", "/wiki/api/v2/attachments") == "GET /wiki/api/v2/attachments"
    metrics = Metrics(role="worker")
    recorder = CallRecorder(structlog.get_logger("test"), metrics)
    for n in range(5):
        url = f"https://a.net/wiki/api/v2/attachments/att100{n}"
        recorder.info("confluence call", method="GET", url=url, status=200, ms=5)
    text = metrics.render().decode()
    series = [
        line for line in text.splitlines() if line.startswith("reactor_confluence_calls_total{")
    ]
    assert series == [
        'reactor_confluence_calls_total{operation="GET /wiki/api/v2/attachments/{id}",'
        'status="200"} 5.0'
    ]


async def test_client_calls_are_counted_and_shown_on_the_job(
    settings: Settings, redis: Redis, live_server: Callable[..., Any]
) -> None:
    event = make_event(content_id="123")
    await EventQueue(redis, settings).put(event)
    metrics = Metrics()
    recorder = CallRecorder(structlog.get_logger("test"), metrics)
    site = Site.basic(site_url="https://acme.atlassian.net", email="bot@acme.test", api_token="t")
    async with httpx.AsyncClient(transport=httpx.MockTransport(confluence)) as http:
        client = ConfluenceClient(http, site, Unmetered(), event_id=event.id, logger=recorder)
        await client.get_page("123")
        with pytest.raises(ConfluenceError):
            await client.get_page("999")
    async with redis.pipeline(transaction=True) as pipe:  # as the job layer sends them
        recorder.writes(settings.redis_prefix, event.id)(pipe)
        await pipe.execute()

    calls = await read_calls(redis, settings.redis_prefix, event.id)
    assert [(c["operation"], c["status"]) for c in calls] == [
        ("GET /wiki/api/v2/pages/{id}", 200),
        ("GET /wiki/api/v2/pages/{id}", 404),
    ]
    assert calls[0]["points"] is not None and calls[1]["error"]
    text = metrics.render().decode()
    assert (
        'reactor_confluence_calls_total{operation="GET /wiki/api/v2/pages/{id}",status="404"} 1.0'
        in text
    )

    server = live_server()
    async with httpx.AsyncClient(base_url=server.url) as api:
        answer = await api.get(
            f"/api/jobs/{event.id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    shown = answer.json()["calls"]
    assert [c["status"] for c in shown] == [200, 404]
    assert "Authorization" not in json.dumps(shown)
