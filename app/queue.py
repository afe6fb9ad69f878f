"""The queue contract: event id = job id, JSON job payloads, dedupe and enqueue in one round trip.

Ingest calls :meth:`EventQueue.put`. One Lua script (:data:`app.jobstate.PUT`) claims the
dedupe key (kept for the dedupe window, also after the job finished), records the event, puts
it in line behind earlier events of the same content and, when it is first in line, schedules
its arq job, atomically. A Redis that is down or slower than the ingest bound raises
:class:`~app.errors.QueueUnavailable`, so nothing is acknowledged that is not stored.

Concurrent puts of one event loop are sent together: the first put of a loop iteration opens a
batch, every put of the same iteration joins it, and the batch goes out as one pipeline of
``EVALSHA`` calls (one write, one read). Each put is still its own atomic script call; batching
only saves system calls and per-command overhead under load.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from app.atlassian.events import Event
from app.errors import QueueUnavailable
from app.jobstate import JOB_EXPIRY_MS, PROCESS_EVENT, PUT, RECORD_TTL_SECONDS, Keys
from app.settings import Settings

__all__ = ["PROCESS_EVENT", "EventQueue", "Keys", "job_deserializer", "job_serializer"]

_Call = tuple[list[str | int], "asyncio.Future[int]"]


def job_serializer(data: dict[str, Any]) -> bytes:
    """arq job serializer: JSON, so Lua scripts can write jobs too."""
    return json.dumps(data, separators=(",", ":")).encode()


def job_deserializer(data: bytes) -> Any:
    return json.loads(data)


class EventQueue:
    """Durable, deduplicating, per-content ordered enqueue of normalised events."""

    def __init__(self, redis: Redis, settings: Settings, *, batch: bool = True) -> None:
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.timeout = settings.ingest_timeout_seconds
        self.batch = batch
        self._sha = hashlib.sha1(PUT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        self._fixed: list[str | int] = [
            settings.dedupe_window_seconds,
            RECORD_TTL_SECONDS,
        ]
        self._pending: list[_Call] = []

    def _command(self, event: Event) -> list[str | int]:
        keys = self.keys
        content = event.content_key
        return [
            "EVALSHA",
            self._sha,
            5,
            keys.dedupe(event.id),
            keys.event(event.id),
            keys.content(content),
            keys.queue,
            keys.events,
            event.to_json(),
            *self._fixed,
            event.id,
            PROCESS_EVENT,
            JOB_EXPIRY_MS,
            event.tenant,
            event.type,
            content,
            keys.prefix,
        ]

    async def put(self, event: Event) -> bool:
        """Store and schedule ``event``; False when its id was seen within the dedupe window."""
        command = self._command(event)
        try:
            if self.batch:
                future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                future.add_done_callback(_consume)
                self._pending.append((command, future))
                if len(self._pending) == 1:
                    asyncio.get_running_loop().call_soon(self._flush)
                created = await asyncio.wait_for(asyncio.shield(future), self.timeout)
            else:
                created = await asyncio.wait_for(self._single(command), self.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable("the event store is unavailable; retry later") from exc
        return bool(created)

    async def _single(self, command: list[str | int]) -> int:
        try:
            return int(await self.redis.execute_command(*command))  # type: ignore[no-untyped-call]
        except NoScriptError:
            await self.redis.script_load(PUT)
            return int(await self.redis.execute_command(*command))  # type: ignore[no-untyped-call]

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        task.add_done_callback(_consume)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            results = await self._pipeline([command for command, _ in calls])
            if any(isinstance(r, NoScriptError) for r in results):
                await self.redis.script_load(PUT)
                retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
                again = await self._pipeline([calls[i][0] for i in retry])
                for i, result in zip(retry, again, strict=True):
                    results[i] = result
        except (RedisError, OSError) as exc:
            results = [exc] * len(calls)
        for (_, future), result in zip(calls, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(int(result))

    async def _pipeline(self, commands: list[list[str | int]]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def get(self, event_id: str) -> Event | None:
        raw = await self.redis.hget(self.keys.event(event_id), "event")  # type: ignore[misc]
        return None if raw is None else Event.from_json(raw)


def _consume(done: asyncio.Future[Any]) -> None:
    # Marks an exception as seen when nobody waits any more (the put timed out).
    if not done.cancelled():
        done.exception()
