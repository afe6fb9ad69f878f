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
Redis protocol once, when it is made; the batch is sent as those bytes on the queue's
:class:`~app.redis_pipe.SharedConnection` (one connection held from the client's pool, batches
pipelined on it), not through the client's per-argument command packing and per-command
check-out. A batch whose connection failed is sent once more on a new one: the script is safe
to repeat (a batch that did run the first time finds its events' dedupe keys and answers
"duplicate" for them; either way they are stored and acknowledged). A batch without a reply
within the bound fails its puts and gives up the connection.

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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from app.atlassian.events import Event, alias_id
from app.errors import QueueUnavailable
from app.jobstate import JOB_EXPIRY_MS, PROCESS_EVENT, PUT, Keys
from app.redis_pipe import SharedConnection
from app.settings import Settings

__all__ = ["PROCESS_EVENT", "EventQueue", "Keys", "job_deserializer", "job_serializer"]

_Call = tuple[bytes, "asyncio.Future[int]"]
# The protocol form of one put's seven arguments (bulk strings, each with its length).
_PER_PUT = 7
_PUT_ARGS = b"$%d\r\n%b\r\n" * _PER_PUT
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
        self._shared = SharedConnection(redis)
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
        alias = (alias_id(event) or "").encode()
        # The script's seven arguments of this event, in the protocol's form.
        args = _PUT_ARGS % (
            len(event_id), event_id, len(stored), stored, len(tenant), tenant,
            len(type_), type_, len(content), content, len(source), source, len(alias), alias,
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
                try:
                    [created] = await asyncio.wait_for(self._eval([args]), self.timeout)
                except TimeoutError:
                    self._shared.drop()
                    raise
        except (RedisError, OSError, TimeoutError) as exc:
            raise QueueUnavailable("the event store is unavailable; retry later") from exc
        return bool(created)

    async def _eval(self, puts: list[bytes]) -> list[int]:
        """One ``EVALSHA`` of the put script for ``puts`` (each seven encoded arguments)."""
        count = self._head_count + _PER_PUT * len(puts)
        command = b"*%d\r\n%b%b" % (count, self._head, b"".join(puts))
        try:
            result = await self._call(command)
        except NoScriptError:
            await self.redis.script_load(PUT)
            result = await self._call(command)
        return [int(r) for r in result]

    async def _call(self, command: bytes) -> Any:
        try:
            return await self._shared.call(command)
        except (RedisConnectionError, OSError):
            # A connection Redis closed or reset (restart, idle timeout): once more on a new one.
            return await self._shared.call(command)

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        if not calls:
            return  # already sent when it filled up
        loop = asyncio.get_running_loop()
        # One timer per batch bounds every put in it (cheaper than wait_for per put). A put
        # whose caller is gone has its future cancelled: it is skipped, never left failed.
        task = loop.create_task(self._send(calls))
        timer = loop.call_later(self.timeout, self._expire, calls, task)
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

    def _expire(self, calls: list[_Call], sending: asyncio.Task[None]) -> None:
        expired = False
        for _, future in calls:
            if not future.done():
                future.set_exception(TimeoutError("no answer from Redis within the ingest bound"))
                expired = True
        if expired:
            sending.cancel()  # its puts are answered: no resending on a new connection
            self._shared.drop()  # the connection may be dead without saying so

    async def get(self, event_id: str) -> Event | None:
        raw = await self.redis.hget(self.keys.event(event_id), "event")  # type: ignore[misc]
        return None if raw is None else Event.from_json(raw)


def _finished(timer: asyncio.TimerHandle, task: asyncio.Task[None]) -> None:
    timer.cancel()
    _consume(task)


def _consume(done: asyncio.Future[Any]) -> None:
    # Marks an exception as seen when nobody waits any more (the put timed out).
    if not done.cancelled():
        done.exception()
