"""Yardstick of bench/ingest.py: a bare Starlette endpoint answering 204 on the same path."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def accept(request: Request) -> Response:
    return Response(status_code=204)


app = Starlette(routes=[Route("/connect/webhooks/{event}", accept, methods=["POST"])])
