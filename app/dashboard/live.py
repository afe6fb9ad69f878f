"""Server-sent events: the overview numbers and charts, pushed every few seconds.

The stream sends ``event: overview`` with the same JSON as ``GET /api/overview``. All open
streams share one overview computed per period (:func:`app.dashboard.views.overview`), so
their number does not multiply the reads; each such computation also samples the queue depth
into the per-minute activity counters, so the depth chart fills while someone watches.
``app.state.dashboard_live_interval`` (seconds) overrides the period.
The session is checked before every push: a stream opened before its session was signed out
ends at its next push, with ``event: error`` ``{"error": "signed out"}``. While Redis does not
answer, each push is ``event: error`` ``{"error": "redis unavailable"}`` instead of the
overview: the page then marks its figures stale and says since when, until the next overview.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from app.dashboard import auth, views

DEFAULT_INTERVAL = 2.0


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
    interval = float(getattr(request.app.state, "dashboard_live_interval", DEFAULT_INTERVAL))
    return EventSourceResponse(_events(request, interval), ping=15)
