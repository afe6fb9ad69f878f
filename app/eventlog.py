"""Reads and state transitions of event records (key layout and states: :mod:`app.jobstate`).

The job layer moves events through their states here; the dead-letter store, the CLI and the
dashboard read them here. Transitions that touch several keys are single Lua scripts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from app.atlassian.events import Event
from app.jobstate import (
    BEGIN,
    FINISH,
    JOB_EXPIRY_MS,
    PROCESS_EVENT,
    REQUEUE,
    Attempt,
    EventRecord,
    Keys,
)
from app.settings import Settings

EXPIRED = "RecordExpired: the event's record expired while it waited in line"
MAX_SKIPPED = 1000
MAX_LATER = 200
# More writes to send with a transition, in the same round trip (call log, activity counters).
Writes = Callable[[Pipeline], None]


class Started(NamedTuple):
    """What :meth:`EventLog.begin` found: the record before the run, and who waits behind it."""

    record: EventRecord | None
    later_types: list[str]


class Finished(NamedTuple):
    """What :meth:`EventLog.finish` did: the event scheduled next, and expired ones it skipped
    (``ended`` False: the record was not in the state asked for, and nothing changed)."""

    next_id: str | None
    skipped: list[str]
    ended: bool = True


def started(event_id: str, reply: list[Any]) -> Started:
    """A :class:`Started` from the reply of the run-starting script (``begin_run``)."""
    raw, types = reply
    if not raw:
        return Started(None, [])
    it = iter(_text(v) for v in raw)
    fields = dict(zip(it, it, strict=True))
    return Started(EventRecord.from_hash(event_id, fields), [_text(t) for t in types])


def now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventLog:
    """Event records in Redis: what happened to each event, and its way through the queue."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.retention = settings.event_retention_seconds
        self.dead_retention = max(settings.dead_letter_retention_seconds, self.retention)
        self._begin = redis.register_script(BEGIN)
        self._finish = redis.register_script(FINISH)
        self._requeue = redis.register_script(REQUEUE)

    async def record(self, event_id: str) -> EventRecord | None:
        raw = await self.redis.hgetall(self.keys.event(event_id))  # type: ignore[misc]
        if not raw:
            return None
        return EventRecord.from_hash(event_id, {_text(k): _text(v) for k, v in raw.items()})

    async def begin(self, event_id: str, *, later: bool = False) -> Started:
        """Start a run in one round trip: the record as it was, now marked ``running`` (unless
        it is gone or has ended); with ``later``, the types of the events behind it in line."""
        reply = await self._begin(
            keys=[], args=[self.keys.prefix, event_id, "1" if later else "0", MAX_LATER]
        )
        return started(event_id, reply)

    async def waiting_types(self, event_id: str, content_key: str) -> list[str]:
        """The types of the events waiting behind ``event_id`` in its content's line, oldest
        first (at most ``MAX_LATER``; none when it is not in the line)."""
        line = await self.redis.lrange(  # type: ignore[misc]
            self.keys.content(content_key), 0, MAX_LATER
        )
        ids = [_text(i) for i in line]
        if event_id not in ids:
            return []
        behind = ids[ids.index(event_id) + 1 :]
        async with self.redis.pipeline(transaction=False) as pipe:
            for other in behind:
                pipe.hget(self.keys.event(other), "type")
            types = await pipe.execute()
        return [_text(t) for t in types if t]

    async def records(self, event_ids: Sequence[str]) -> list[EventRecord]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.hgetall(self.keys.event(event_id))
            rows = await pipe.execute()
        return [
            EventRecord.from_hash(event_id, {_text(k): _text(v) for k, v in row.items()})
            for event_id, row in zip(event_ids, rows, strict=True)
            if row
        ]

    async def attempts(self, event_id: str) -> list[Attempt]:
        raw = await self.redis.lrange(self.keys.attempts(event_id), 0, -1)  # type: ignore[misc]
        return [Attempt.from_json(item) for item in raw]

    async def mark(
        self, event_id: str, state: str, reason: str = "", next_run: int | None = None
    ) -> None:
        key = self.keys.event(event_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": state, "reason": reason, "updated": now_ms()})
            if next_run is None:
                pipe.hdel(key, "next_run")
            else:
                pipe.hset(key, "next_run", str(next_run))
            await pipe.execute()

    async def add_attempt(self, event_id: str, attempt: Attempt) -> None:
        """Append a failed attempt and set the record's attempt count to its number."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.keys.attempts(event_id), attempt.to_json())
            pipe.expire(self.keys.attempts(event_id), self.retention)
            pipe.hset(self.keys.event(event_id), "attempts", str(attempt.n))
            await pipe.execute()

    async def finish(
        self,
        event_id: str,
        content_key: str,
        state: str,
        reason: str,
        also: Sequence[Writes] = (),
        *,
        only_if: str = "",
    ) -> Finished:
        """End the event in ``state`` and schedule the next event of its content, if any.

        Next events whose records expired while they waited are ended (``discarded``) on the
        way. ``also`` adds best-effort writes to the same round trip: their errors are ignored.
        ``only_if``: end it only if its record is in that state now (checked in the same step).
        """
        keys = self.keys
        script_keys = [
            keys.event(event_id),
            keys.content(content_key),
            keys.queue,
            keys.dlq,
            keys.events,
        ]
        args: list[Any] = [
            event_id,
            state,
            reason,
            keys.prefix,
            PROCESS_EVENT,
            JOB_EXPIRY_MS,
            self.dead_retention if state == "dead" else self.retention,
            self.retention,
            EXPIRED,
            MAX_SKIPPED,
            only_if,
        ]
        if not also:
            reply = await self._finish(keys=script_keys, args=args)
        else:
            # EVALSHA by hand: a pipeline running a registered script first asks Redis whether
            # the script exists (one more round trip); a missing script is loaded below instead.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._finish.sha, len(script_keys), *script_keys, *args)
                for writes in also:
                    writes(pipe)
                results = await pipe.execute(raise_on_error=False)
            reply = results[0]
            if isinstance(reply, NoScriptError):
                reply = await self._finish(keys=script_keys, args=args)
            elif isinstance(reply, Exception):
                raise reply
        nxt, skipped, *refused = reply
        return Finished(None if not nxt else _text(nxt), [_text(i) for i in skipped], not refused)

    async def requeue(self, event: Event) -> int:
        """Put a dead event back in line behind its content's unfinished events.

        1: replayed; 0: its record is gone or no longer dead; -1: the run that killed it is
        still being closed (try again in a moment).
        """
        keys = self.keys
        replayed = dataclasses.replace(event, source="replay")
        done = await self._requeue(
            keys=[
                keys.event(event.id),
                keys.content(event.content_key),
                keys.queue,
                keys.dlq,
                in_progress_key_prefix + event.id,
            ],
            args=[
                event.id,
                replayed.to_json(),
                keys.prefix,
                PROCESS_EVENT,
                JOB_EXPIRY_MS,
                self.retention,
            ],
        )
        return int(done)

    async def recent(
        self,
        *,
        state: str | None = None,
        tenant: str | None = None,
        type_: str | None = None,
        limit: int = 50,
        dead_only: bool = False,
    ) -> list[EventRecord]:
        """Newest first, filtered; scans at most ``20 * limit`` index entries."""
        index = self.keys.dlq if dead_only else self.keys.events
        ids = await self.redis.zrevrange(index, 0, limit * 20 - 1)
        found: list[EventRecord] = []
        for record in await self.records([_text(i) for i in ids]):
            if state and record.state != state:
                continue
            if tenant and record.tenant != tenant:
                continue
            if type_ and record.type != type_:
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found
