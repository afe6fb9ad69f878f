"""Server-sent events: the overview numbers and charts, pushed every few seconds.

The stream sends ``event: overview`` with the same JSON as ``GET /api/overview``. All open
streams share one overview computed per period (:func:`app.dashboard.views.overview`), so
their number does not multiply the reads; each such computation also samples the queue depth
into the per-minute activity counters, so the depth chart fills while someone watches.
``app.state.dashboard_live_interval`` (seconds) overrides the period. A process serves at most
:data:`MAX_STREAMS` streams at once (each holds a connection, tasks and a session check per
push): one more is answered 503 with ``Retry-After``, and the page's stream retries.
The session is checked before every push: a stream opened before its session was signed out
ends at its next push, with ``event: error`` ``{"error": "signed out"}``. While Redis does not
answer, each push is ``event: error`` ``{"error": "redis unavailable"}`` instead of the
overview: the page then marks its figures stale and says since when, until the next overview.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from app.dashboard import auth, views
from app.web.responses import error_response

DEFAULT_INTERVAL = 2.0
# Live streams one web process serves at once; far above a team of operators' open tabs.
MAX_STREAMS = 200


async def _events(request: Request, interval: float) -> AsyncIterator[ServerSentEvent]:
    while True:
        if await auth.signed_in(request) is None:  # signed out (or its token removed) since
            yield ServerSentEvent(data=json.dumps({"error": "signed out"}), event="error")
            return
        try:
            # Every open stream pushes the one overview computed per period.
            data = await views.overview(request, sample=True, fresh_for=interval)
            yield ServerSentEvent(data=json.dumps(data, default=str), event="overview")
        except (RedisError, OSError):
            yield ServerSentEvent(data=json.dumps({"error": "redis unavailable"}), event="error")
        if await request.is_disconnected():
            return
        await asyncio.sleep(interval)


async def stream(request: Request) -> Response:
    operator = await auth.signed_in(request)
    if operator is None:
        # The same JSON 401 (or 429) as the ops API; EventSource only sees the status.
        return await auth.unauthorized(request)
    state = request.app.state
    interval = float(getattr(state, "dashboard_live_interval", DEFAULT_INTERVAL))
    limit = int(getattr(state, "dashboard_max_streams", MAX_STREAMS))
    open_now: int = getattr(state, "dashboard_streams", 0)
    if open_now >= limit:
        return error_response(
            503,
            "too_many_streams",
            "too many live streams open; retry shortly",
            {"Retry-After": "10"},
        )
    return EventSourceResponse(_counted(state, _events(request, interval)), ping=15)


async def _counted(
    state: Any, events: AsyncIterator[ServerSentEvent]
) -> AsyncIterator[ServerSentEvent]:
    """``events``, counted among the open streams from its start until it ends (closed by
    either side). Counted once running, so a stream never started is never counted."""
    state.dashboard_streams = getattr(state, "dashboard_streams", 0) + 1
    try:
        async for event in events:
            yield event
    finally:
        state.dashboard_streams -= 1
