"""Shared steps of every ingest endpoint (Connect webhooks, Forge events, ``reactor receive``).

``read_json`` turns a request body into JSON or one of the ingest errors (415 wrong media type,
413 over ``REACTOR_MAX_BODY_BYTES``, 400 not JSON), which :mod:`app.web.responses` maps to
statuses. ``store`` puts a normalised event on the queue and writes the one log line per
event; a Redis that is down or slow raises ``QueueUnavailable`` (503 with ``Retry-After``).
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.requests import Request

from app.atlassian.events import Event
from app.errors import InvalidPayload, PayloadTooLarge, UnsupportedMediaType
from app.queue import EventQueue

log = structlog.get_logger("reactor.ingest")


def check_media_type(content_type: str | None) -> None:
    """JSON bodies only: ``application/json`` or any ``+json`` type, parameters ignored."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload("the body is not valid JSON") from exc


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before reading (declared) or while."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    if declared is not None and declared.isdigit():
        body = await request.body()
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        return body
    chunks = bytearray()
    async for chunk in request.stream():
        chunks.extend(chunk)
        if len(chunks) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    return bytes(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """Media type, size and JSON checks, in that order (cheapest refusal first)."""
    check_media_type(request.headers.get("content-type"))
    return parse_json(await read_body(request, limit))


async def store(queue: EventQueue, event: Event, **context: Any) -> bool:
    """Enqueue ``event`` (True if new, False if a duplicate) and log it once with its id."""
    created = await queue.put(event)
    log.info(
        "event stored" if created else "duplicate event",
        event_id=event.id,
        tenant=event.tenant,
        type=event.type,
        source=event.source,
        content_id=event.content_id,
        **context,
    )
    return created
