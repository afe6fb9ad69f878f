"""The ingest path without authentication: body checks, event model, ``EventQueue.put``, 204.

``bench/ingest.py --target queue`` measures it against the bare endpoint, to separate what the
queue costs from what request verification costs in the real app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import redis as redis_conn
from app.atlassian.events import from_connect
from app.ingest import read_json
from app.queue import EventQueue
from app.settings import load_settings
from app.web import responses


def factory() -> Starlette:
    settings = load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis_conn.connect(str(settings.redis_url))
        app.state.queue = EventQueue(client, settings)
        yield
        await client.aclose()

    async def receive(request: Request) -> Response:
        body = await read_json(request, settings.max_body_bytes)
        event = from_connect("bench-site-0001", request.path_params["event"], body)
        await request.app.state.queue.put(event)
        return Response(status_code=204)

    return Starlette(
        routes=[Route("/connect/webhooks/{event}", receive, methods=["POST"])],
        exception_handlers=responses.exception_handlers,
        lifespan=lifespan,
    )
