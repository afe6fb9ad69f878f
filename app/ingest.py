"""Shared steps of every ingest endpoint (Connect webhooks, Forge events, ``reactor receive``).

``read_json`` / ``receive_json`` turn a request body into JSON or one of the ingest errors
(415 wrong media type, 413 over ``REACTOR_MAX_BODY_BYTES``, 400 not JSON), which
:mod:`app.web.responses` maps to statuses. The body is read with a bound: a declared length
over the limit is refused before reading, a streamed one as soon as it passes the limit.
``store`` puts a normalised event on the queue and writes the one log line per event; a Redis
that is down or slow raises ``QueueUnavailable`` (503 with ``Retry-After``).

Counting (:class:`Counters`): every delivery that reaches an endpoint is ``received``; it ends
``accepted`` (stored, duplicates included) or ``rejected`` with the refusal code as reason.
Prometheus counters are per process (``received`` and ``accepted`` are counted in plain
integers on the hot path and added to the registry before each render); the per-minute
activity counters the dashboard charts live in Redis. An accepted event's activity counters
are bumped by the queue's put script in the same round trip; a rejected one costs one extra
pipeline (off the hot path).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.types import Receive

from app.atlassian.events import Event
from app.errors import InvalidPayload, PayloadTooLarge, UnsupportedMediaType
from app.logs import info_line
from app.metrics import ACTIVITY_KEEP_SECONDS, Activity, Metrics
from app.queue import EventQueue

log = structlog.get_logger("reactor.ingest")

# Refusals caused by Redis itself: counting them in Redis would only hold the answer back
# for another ingest bound.
REDIS_FAILURES = frozenset({"queue_unavailable", "tenant_store_unavailable"})


def media_type(content_type: str | bytes | None) -> str:
    """The media type of a ``Content-Type`` value, parameters dropped, lower case."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | bytes | None) -> None:
    """JSON bodies only: ``application/json`` or any ``+json`` type, parameters ignored."""
    kind = media_type(content_type)
    if kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")


def parse_json(body: bytes) -> Any:
    """Strict RFC 8259 JSON in UTF-8 (what the stored raw payload must be)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload("the body is not valid JSON") from exc


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {limit} bytes")


def check_declared_length(declared: str | bytes | None, limit: int) -> None:
    """Refuse a body whose ``Content-Length`` is over ``limit`` before reading any of it."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)


async def receive_body(receive: Receive, limit: int) -> bytes:
    """The raw body from an ASGI ``receive``, never holding more than ``limit`` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise _too_large(limit)
    if not message.get("more_body", False):
        if message["type"] != "http.request":
            raise InvalidPayload("the request ended before its body")
        return body
    chunks = bytearray(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidPayload("the request ended before its body")
        chunks.extend(message.get("body", b""))
        if len(chunks) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            return bytes(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before reading (declared) or while."""
    check_declared_length(request.headers.get("content-length"), limit)
    chunks = bytearray()
    async for chunk in request.stream():
        chunks.extend(chunk)
        if len(chunks) > limit:
            raise _too_large(limit)
    return bytes(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """Media type, size and JSON checks, in that order (cheapest refusal first)."""
    check_media_type(request.headers.get("content-type"))
    return parse_json(await read_body(request, limit))


class Tally:
    """A Prometheus counter child counted in a plain integer, added to the child by ``flush``.

    ``inc`` is what the hot path pays; the child's lock and value are touched once per scrape.
    """

    __slots__ = ("child", "count")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.count = 0

    def inc(self, amount: int = 1) -> None:
        self.count += amount

    def flush(self) -> None:
        count, self.count = self.count, 0
        if count:
            self.child.inc(count)


class Counters:
    """The ingest metrics of one source: Prometheus children resolved once, activity in Redis."""

    def __init__(self, metrics: Metrics, activity: Activity, source: str, timeout: float) -> None:
        self.source = source
        self.activity = activity
        self.timeout = timeout
        self.received = Tally(metrics.events_received.labels(source))
        self.accepted = Tally(metrics.events_accepted.labels(source))
        metrics.before_render.append(self.flush)
        self._rejected_family = metrics.events_rejected
        self._rejected: dict[str, Counter] = {}

    def flush(self) -> None:
        self.received.flush()
        self.accepted.flush()

    async def reject(self, reason: str) -> None:
        """Count a refused delivery; a Redis that fails here never changes the answer."""
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = self._rejected_family.labels(self.source, reason)
        child.inc()
        if reason in REDIS_FAILURES:
            return  # Redis is what failed: the per-minute counters cannot be reached either
        key = self.activity.key(int(time.time() // 60))
        try:
            async with self.activity.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(key, f"received:{self.source}", 1)
                pipe.hincrby(key, f"rejected:{self.source}:{reason}", 1)
                pipe.expire(key, ACTIVITY_KEEP_SECONDS)
                await asyncio.wait_for(pipe.execute(), self.timeout)
        except (RedisError, OSError, TimeoutError):
            log.warning("rejection not counted: redis unavailable", source=self.source)


def counters(state: Any, source: str) -> Counters:
    """The :class:`Counters` of ``source`` for one app (``app.state``), made on first use."""
    cache: dict[str, Counters] | None = getattr(state, "ingest_counters", None)
    if cache is None:
        cache = state.ingest_counters = {}
    found = cache.get(source)
    if found is None:
        settings = state.settings
        activity = Activity(state.redis, settings.redis_prefix)
        found = cache[source] = Counters(
            state.metrics, activity, source, settings.ingest_timeout_seconds
        )
    return found


async def store(
    queue: EventQueue,
    event: Event,
    counted: Counters | None = None,
    *,
    what: str = "event",
    logger: Any = None,
    **context: Any,
) -> bool:
    """Enqueue ``event`` (True if new, False if a duplicate) and log it once with its id.

    With ``counted``, the event counts as accepted: the Prometheus counter here, the
    per-minute activity counters inside the queue's put script. ``logger`` (default: this
    module's) writes the line, so an endpoint can keep its own logger name and bound fields.
    """
    created = await queue.put(event, count=counted is not None)
    if counted is not None:
        counted.accepted.inc()
    message = f"{what} stored" if created else f"duplicate {what}"
    fields = {
        "event_id": event.id,
        "tenant": event.tenant,
        "type": event.type,
        "source": event.source,
        "content_id": event.content_id,
    }
    if logger is None and not context:
        info_line(log, message, **fields)  # the hot path: this module's logger, no extra fields
    else:
        (logger or log).info(message, **fields, **context)
    return created
