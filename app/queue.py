"""The queue contract: event id = job id, JSON job payloads, dedupe and enqueue in one round trip.

Ingest calls :meth:`EventQueue.put`; one Lua script claims the dedupe key (kept for the
dedupe window, also after the job finished), stores the normalised event and schedules the
arq job, atomically. A Redis that is down or slower than the ingest bound raises
:class:`~app.errors.QueueUnavailable`, so nothing is acknowledged that is not stored.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.atlassian.events import Event
from app.errors import QueueUnavailable
from app.settings import Settings

PROCESS_EVENT = "process_event"
EVENT_TTL_SECONDS = 14 * 24 * 3600
JOB_EXPIRY_MS = 7 * 24 * 3600 * 1000

# KEYS: dedupe, event, arq job, arq queue. ARGV: event json, dedupe ttl s, event ttl s,
# job id, function name, job expiry ms. Returns 1 when enqueued, 0 for a duplicate.
PUT_SCRIPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) == false then
  return 0
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
local job = cjson.encode({t = cjson.null, f = ARGV[5], a = {ARGV[4]}, k = {}, et = now_ms})
redis.call('SET', KEYS[3], job, 'PX', ARGV[6])
redis.call('ZADD', KEYS[4], now_ms, ARGV[4])
return 1
"""


def job_serializer(data: dict[str, Any]) -> bytes:
    """arq job serializer: JSON, so Lua scripts can write jobs too."""
    return json.dumps(data, separators=(",", ":")).encode()


def job_deserializer(data: bytes) -> Any:
    return json.loads(data)


class Keys:
    """Every Redis key of the pipeline, derived once from the prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = f"{prefix}queue"

    def dedupe(self, event_id: str) -> str:
        return f"{self.prefix}seen:{event_id}"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    @staticmethod
    def arq_job(job_id: str) -> str:
        return f"arq:job:{job_id}"


class EventQueue:
    """Durable, deduplicating enqueue of normalised events."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.timeout = settings.ingest_timeout_seconds
        self.dedupe_seconds = settings.dedupe_window_seconds
        self._put = redis.register_script(PUT_SCRIPT)

    async def put(self, event: Event) -> bool:
        """Store and schedule ``event``; False when its id was seen within the dedupe window."""
        keys = [
            self.keys.dedupe(event.id),
            self.keys.event(event.id),
            self.keys.arq_job(event.id),
            self.keys.queue,
        ]
        args: list[str | int] = [
            event.to_json(),
            self.dedupe_seconds,
            EVENT_TTL_SECONDS,
            event.id,
            PROCESS_EVENT,
            JOB_EXPIRY_MS,
        ]
        try:
            created = await asyncio.wait_for(self._put(keys=keys, args=args), self.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable("the event store is unavailable; retry later") from exc
        return bool(created)

    async def get(self, event_id: str) -> Event | None:
        raw = await self.redis.get(self.keys.event(event_id))
        return None if raw is None else Event.from_json(raw)
