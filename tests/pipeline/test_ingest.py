"""Shared ingest steps over a real socket: 415, 413, 400, 503 with Retry-After, 204."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import redis as redis_conn
from app.atlassian.events import from_connect
from app.embedded_redis import free_port
from app.ingest import read_json, store
from app.queue import EventQueue
from app.settings import Settings
from app.web import responses

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"


def ingest_app(redis_url: str, settings: Settings) -> Starlette:
    """A minimal endpoint made of the shared steps; its Redis client lives in its own loop."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis_conn.connect(redis_url, socket_connect_timeout=0.3)
        app.state.queue = EventQueue(client, settings)
        yield
        await client.aclose()

    async def receive(request: Request) -> Response:
        body = await read_json(request, settings.max_body_bytes)
        event = from_connect("site-a", request.path_params["event"], body)
        created = await store(request.app.state.queue, event)
        return Response(status_code=204 if created else 200)

    return Starlette(
        routes=[Route("/hook/{event}", receive, methods=["POST"])],
        exception_handlers=responses.exception_handlers,
        lifespan=lifespan,
    )


@pytest.fixture
async def client(
    redis: Redis, settings: Settings, live_server: Callable[..., object]
) -> AsyncIterator[httpx.AsyncClient]:
    small = settings.model_copy(update={"max_body_bytes": 4096})
    assert settings.redis_url is not None
    server = live_server(ingest_app(settings.redis_url, small))
    async with httpx.AsyncClient(base_url=server.url) as http:  # type: ignore[attr-defined]
        yield http


PAGE = (FIXTURES / "connect" / "page_updated.json").read_bytes()
JSON = {"content-type": "application/json"}


async def test_a_stored_event_is_acknowledged_once(client: httpx.AsyncClient) -> None:
    first = await client.post("/hook/page_updated", content=PAGE, headers=JSON)
    assert first.status_code == 204
    again = await client.post("/hook/page_updated", content=PAGE, headers=JSON)
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"content-type": "text/plain"}, PAGE, 415, "unsupported_media_type"),
        ({}, PAGE, 415, "unsupported_media_type"),
        (JSON, b"{" + b" " * 5000 + b"}", 413, "payload_too_large"),
        (JSON, b"{not json", 400, "invalid_payload"),
        (JSON, json.dumps({"page": {"title": "no id"}}).encode(), 400, "invalid_payload"),
        ({"content-type": "application/json; charset=utf-8"}, b"[]", 400, "invalid_payload"),
    ],
)
async def test_bad_requests_get_json_errors(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, status: int, code: str
) -> None:
    response = await client.post("/hook/page_updated", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == code


async def test_a_streamed_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = await client.post("/hook/page_updated", content=chunks(), headers=JSON)
    assert response.status_code == 413


async def test_redis_down_answers_503_with_retry_after(
    settings: Settings, live_server: Callable[..., object]
) -> None:
    server = live_server(ingest_app(f"redis://127.0.0.1:{free_port()}/0", settings))
    async with httpx.AsyncClient(base_url=server.url) as http:  # type: ignore[attr-defined]
        response = await http.post("/hook/page_updated", content=PAGE, headers=JSON)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "queue_unavailable"
