"""The queue contract: event id = job id, JSON job payloads, dedupe and enqueue in one round trip.

Ingest calls :meth:`EventQueue.put`. One Lua script (:data:`app.jobstate.PUT`) claims the
dedupe key (kept for the dedupe window, also after the job finished), records the event, puts
it in line behind earlier events of the same content and, when it is first in line, schedules
its arq job, atomically. A Redis that is down or slower than the ingest bound raises
:class:`~app.errors.QueueUnavailable`, so nothing is acknowledged that is not stored.

Concurrent puts of one event loop are sent together: the first put of a loop iteration opens a
batch, every put of the same iteration joins it, and the batch goes out as one ``EVALSHA`` of
the same script (one command, one reply) at the end of the iteration, or as soon as it holds
``FLUSH_AT`` events (so Redis works on it while the server handles the rest of a burst). Each
event is still stored atomically and answered on its own; batching only saves round trips,
system calls and per-command overhead under load. Each put's arguments are encoded in the
Redis protocol once, when it is made; the batch is sent as those bytes on a pooled connection
(with the client's retry policy), not through the client's per-argument command packing.

A put made with ``count=True`` (ingest endpoints) also bumps the per-minute activity counters
that the dashboard reads (``received:<source>``, ``accepted:<source>``, ``duplicate:<source>``
in :class:`app.metrics.Activity`'s hash) inside the same script: no extra round trip.
The event is stored as :meth:`Event.encode` makes it: the raw payload bytes as received.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from app.atlassian.events import Event
from app.errors import QueueUnavailable
from app.jobstate import JOB_EXPIRY_MS, PROCESS_EVENT, PUT, Keys
from app.settings import Settings

__all__ = ["PROCESS_EVENT", "EventQueue", "Keys", "job_deserializer", "job_serializer"]

_Call = tuple[bytes, "asyncio.Future[int]"]
# The protocol form of one put's six arguments (bulk strings, each with its length).
_PUT_ARGS = b"$%d\r\n%b\r\n" * 6
# A batch this full goes out at once instead of at the end of the loop iteration: Redis works
# on it while the rest of a burst of requests is still being verified and parsed.
FLUSH_AT = 16
# How long a per-minute activity hash is kept: app.metrics.ACTIVITY_KEEP_SECONDS (the queue
# sits below app.metrics and does not import it; a test holds the two equal).
ACTIVITY_KEEP_SECONDS = 2 * 3600


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
        sha = hashlib.sha1(PUT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        head = [
            str(arg).encode()
            for arg in (
                "EVALSHA",
                sha,
                0,
                settings.redis_prefix,
                settings.dedupe_window_seconds,
                settings.event_retention_seconds,
                PROCESS_EVENT,
                JOB_EXPIRY_MS,
                ACTIVITY_KEEP_SECONDS,
            )
        ]
        self._head_count = len(head)
        self._head = b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in head)
        self._pending: list[_Call] = []

    async def put(self, event: Event, *, count: bool = False) -> bool:
        """Store and schedule ``event``; False when its id was seen within the dedupe window.

        ``count``: also count it as received and accepted (and duplicate) for its source in
        the per-minute activity counters, in the same script.
        """
        tenant = event.tenant.encode()
        event_id = event.id.encode()
        stored = event.encode()
        type_ = event.type.encode()
        content = b"%b:%b" % (tenant, event.content_id.encode())
        source = event.source.encode() if count else b""
        # The script's six arguments of this event, in the protocol's form.
        args = _PUT_ARGS % (
            len(event_id), event_id, len(stored), stored, len(tenant), tenant,
            len(type_), type_, len(content), content, len(source), source,
        )  # fmt: skip
        try:
            if self.batch:
                loop = asyncio.get_running_loop()
                future: asyncio.Future[int] = loop.create_future()
                pending = self._pending
                pending.append((args, future))
                if len(pending) == 1:
                    loop.call_soon(self._flush)
                elif len(pending) >= FLUSH_AT:
                    self._flush()
                created = await future
            else:
                [created] = await asyncio.wait_for(self._eval([args]), self.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable("the event store is unavailable; retry later") from exc
        return bool(created)

    async def _eval(self, puts: list[bytes]) -> list[int]:
        """One ``EVALSHA`` of the put script for ``puts`` (each six encoded arguments)."""
        count = self._head_count + 6 * len(puts)
        command = b"*%d\r\n%b%b" % (count, self._head, b"".join(puts))
        try:
            result = await _call(self.redis, command)
        except NoScriptError:
            await self.redis.script_load(PUT)
            result = await _call(self.redis, command)
        return [int(r) for r in result]

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        if not calls:
            return  # already sent when it filled up
        loop = asyncio.get_running_loop()
        # One timer per batch bounds every put in it (cheaper than wait_for per put). A put
        # whose caller is gone has its future cancelled: it is skipped, never left failed.
        timer = loop.call_later(self.timeout, _expire, calls)
        task = loop.create_task(self._send(calls))
        task.add_done_callback(functools.partial(_finished, timer))

    async def _send(self, calls: list[_Call]) -> None:
        try:
            results: list[int] | None = await self._eval([args for args, _ in calls])
            error: BaseException | None = None
        except (RedisError, OSError) as exc:
            results, error = None, exc
        for i, (_, future) in enumerate(calls):
            if future.done():
                continue
            if results is None:
                future.set_exception(error or RedisError("no reply"))
            else:
                future.set_result(results[i])

    async def get(self, event_id: str) -> Event | None:
        raw = await self.redis.hget(self.keys.event(event_id), "event")  # type: ignore[misc]
        return None if raw is None else Event.from_json(raw)


async def _call(redis: Redis, command: bytes) -> Any:
    """Send one encoded command and read its reply, as ``Redis.execute_command`` does.

    A pooled connection, the client's retry policy for connection errors (the connection is
    dropped and, for a retryable error, the command sent again on a new one), hiredis replies.
    """
    if redis.single_connection_client:
        raise RuntimeError("the event queue needs a pooled Redis client")
    pool = redis.connection_pool
    conn = await pool.get_connection()

    async def exchange() -> Any:
        await conn.send_packed_command(command)
        return await conn.read_response()

    async def failed(error: Exception) -> None:
        await conn.disconnect()
        if conn.retry_on_error is None or not isinstance(error, tuple(conn.retry_on_error)):
            raise error

    try:
        return await conn.retry.call_with_retry(exchange, failed)
    finally:
        await pool.release(conn)


def _expire(calls: list[_Call]) -> None:
    for _, future in calls:
        if not future.done():
            future.set_exception(TimeoutError("no answer from Redis within the ingest bound"))


def _finished(timer: asyncio.TimerHandle, task: asyncio.Task[None]) -> None:
    timer.cancel()
    _consume(task)


def _consume(done: asyncio.Future[Any]) -> None:
    # Marks an exception as seen when nobody waits any more (the put timed out).
    if not done.cancelled():
        done.exception()
