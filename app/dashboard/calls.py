"""The Confluence calls of each job: counted in Prometheus and kept for the job's detail page.

The Confluence client logs one line per call (``confluence call``, ``confluence error``,
``confluence invalid response``, ``confluence call failed``) with method, url, status, ms and
cost. :class:`CallRecorder` is a logger for the client that passes every line on unchanged
and also notes those calls. The job layer makes one per job::

    recorder = CallRecorder(log, metrics)
    client = ConfluenceClient(http, site, budget, event_id=event.id, logger=recorder)
    ...
    also = [recorder.writes(settings.redis_prefix, event.id, keep), ...]  # with the run's end

Key: ``{prefix}calls:<event id>``, a list of JSON objects (at, operation, status, points,
duration_ms), capped at :data:`MAX_CALLS`, kept as long as the event record: the event
retention after a run that ended it done, the dead-letter retention (or the event retention,
whichever is longer) after any other run, which may end as a dead letter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.metrics import Metrics

CALL_EVENTS = frozenset(
    {"confluence call", "confluence error", "confluence invalid response", "confluence call failed"}
)
MAX_CALLS = 200
KEEP_SECONDS = 14 * 24 * 3600
# Numeric ids, attachment ids (``att`` and digits, as get_attachment's path carries them) and
# UUIDs (cloud ids): each would make a new ``operation`` label, and so a new series, per call.
_ID_SEGMENT = re.compile(r"/((?:att)?\d+|[0-9a-f]{8}-[0-9a-f-]{27,})(?=/|$)", re.IGNORECASE)


def operation(method: str, url: str) -> str:
    """``GET /wiki/api/v2/pages/{id}``: the method and path with ids templated (few labels)."""
    path = re.sub(r"^https?://[^/]+", "", url).split("?", 1)[0]
    return f"{method.upper()} {_ID_SEGMENT.sub('/{id}', path)}"


def _error(kw: dict[str, Any]) -> str:
    parts = [str(kw[k]) for k in ("code", "error") if kw.get(k)]
    return ": ".join(parts)[:300] or "error"


def calls_key(prefix: str, event_id: str) -> str:
    return f"{prefix}calls:{event_id}"


class CallRecorder:
    """A structlog-style logger that also records Confluence calls (see module docstring)."""

    def __init__(
        self, logger: Any, metrics: Metrics | None = None, calls: list[dict[str, Any]] | None = None
    ) -> None:
        self._logger = logger
        self._metrics = metrics
        self.calls: list[dict[str, Any]] = calls if calls is not None else []

    def bind(self, **kw: Any) -> CallRecorder:
        return CallRecorder(self._logger.bind(**kw), self._metrics, self.calls)

    def _note(self, event: str, kw: dict[str, Any]) -> None:
        if event not in CALL_EVENTS:
            return
        op = operation(str(kw.get("method", "?")), str(kw.get("url", "")))
        status = str(kw.get("status", 0))
        if self._metrics is not None:
            self._metrics.confluence_calls.labels(operation=op, status=status).inc()
            if "ms" in kw:
                seconds = float(kw["ms"]) / 1000
                self._metrics.confluence_call_seconds.labels(operation=op).observe(seconds)
        if len(self.calls) < MAX_CALLS:
            self.calls.append(
                {
                    "at": time.time(),
                    "operation": op,
                    "status": int(status) if status.isdigit() else 0,
                    "points": kw.get("cost"),
                    "duration_ms": kw.get("ms"),
                    "error": None if event == "confluence call" else _error(kw),
                }
            )

    def debug(self, event: str, **kw: Any) -> Any:
        self._note(event, kw)
        return self._logger.debug(event, **kw)

    def info(self, event: str, **kw: Any) -> Any:
        self._note(event, kw)
        return self._logger.info(event, **kw)

    def warning(self, event: str, **kw: Any) -> Any:
        self._note(event, kw)
        return self._logger.warning(event, **kw)

    def writes(
        self, prefix: str, event_id: str, keep_seconds: int = KEEP_SECONDS
    ) -> Callable[[Pipeline], None]:
        """Commands for a pipeline the caller sends: append the calls noted so far to the
        event's call list (capped, kept ``keep_seconds``: as long as the record), and forget
        them."""

        def add(pipe: Pipeline) -> None:
            if not self.calls:
                return
            key = calls_key(prefix, event_id)
            pipe.rpush(key, *(json.dumps(c, separators=(",", ":")) for c in self.calls))
            pipe.ltrim(key, -MAX_CALLS, -1)
            pipe.expire(key, keep_seconds)
            self.calls.clear()

        return add


async def read_calls(redis: Redis, prefix: str, event_id: str) -> list[dict[str, Any]]:
    rows = await redis.lrange(calls_key(prefix, event_id), 0, -1)  # type: ignore[misc]
    out = []
    for raw in rows:
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out
