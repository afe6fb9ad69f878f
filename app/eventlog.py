"""Reads and state transitions of event records (key layout and states: :mod:`app.jobstate`).

The job layer moves events through their states here; the dead-letter store, the CLI and the
dashboard read them here. Transitions that touch several keys are single Lua scripts.

Besides the keys of :mod:`app.jobstate`, ``P failing`` (ZSET, score = when it was marked, epoch
ms) holds the events marked ``failed`` (a retry scheduled): :meth:`EventLog.mark` adds and
removes them, :meth:`EventLog.finish` removes them, and entries older than the retention are
trimmed. An event running its retry stays listed until it ends or is marked again, so readers
check each entry's state. Listings read records' small fields first (:data:`FIELDS`, never the
stored event) and fetch whole records only for the rows they return.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
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
# Most index entries a listing reads per round trip, and records whose small fields one script
# call reads.
BATCH = 500
# A record's fields but its stored event (``event``, the raw payload): what filters and
# summaries need.
SMALL_FIELDS = (
    "state", "reason", "attempts", "received", "updated", "tenant", "type", "content",
    "next_run", "replays",
)  # fmt: skip

# KEYS: event records; ARGV: field names. The fields of each record, flat (nil when missing).
FIELDS = """
local out = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], unpack(ARGV))
  for j = 1, #ARGV do
    out[#out + 1] = f[j]
  end
end
return out
"""
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


class Entry(NamedTuple):
    """An entry of a time-ordered index (``events``, ``dlq``, ``failing``): id and score (ms)."""

    member: str
    score: int


def _entries(raw: Iterable[tuple[bytes | str, float]]) -> list[Entry]:
    return [Entry(_text(m), int(s)) for m, s in raw]


class EventLog:
    """Event records in Redis: what happened to each event, and its way through the queue."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.failing = f"{settings.redis_prefix}failing"
        self.retention = settings.event_retention_seconds
        self.dead_retention = max(settings.dead_letter_retention_seconds, self.retention)
        self._begin = redis.register_script(BEGIN)
        self._finish = redis.register_script(FINISH)
        self._requeue = redis.register_script(REQUEUE)
        self._fields = redis.register_script(FIELDS)

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
        """Whole records (with the stored event), in order; gone ones are left out."""
        if not event_ids:
            return []
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
        key, now = self.keys.event(event_id), now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": state, "reason": reason, "updated": now})
            # Kept the retention after this change (and never for ever, should the record
            # have expired during the run this marks).
            pipe.expire(key, self.retention)
            if next_run is None:
                pipe.hdel(key, "next_run")
            else:
                pipe.hset(key, "next_run", str(next_run))
            if state == "failed":
                pipe.zadd(self.failing, {event_id: now})
                # Older entries are stale: a failed event runs again well within the retention.
                pipe.zremrangebyscore(self.failing, "-inf", now - self.retention * 1000)
            else:
                pipe.zrem(self.failing, event_id)
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
        script_keys, args = self._finish_call(event_id, content_key, state, reason, only_if)
        if not only_if:  # an event that ends is failing no more (``only_if``: it is not failing)
            also = [*also, self._unlist_failing(event_id)]
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

    def _finish_call(
        self, event_id: str, content_key: str, state: str, reason: str, only_if: str
    ) -> tuple[list[str], list[Any]]:
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
        return script_keys, args

    def _unlist_failing(self, event_id: str) -> Writes:
        def write(pipe: Pipeline) -> None:
            pipe.zrem(self.failing, event_id)

        return write

    async def end_dead(self, dead: Sequence[EventRecord], state: str, reason: str) -> list[bool]:
        """End each of ``dead`` in ``state`` if its record is still ``dead`` (checked in the
        same step, as :meth:`finish` with ``only_if="dead"``), in one round trip for all of them
        (plus one when the script is not loaded yet). True for each one ended."""
        if not dead:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in dead:
                keys, args = self._finish_call(record.id, record.content, state, reason, "dead")
                await self._finish(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return [len(reply) < 3 for reply in replies]

    async def requeue(self, event: Event) -> int:
        """Put a dead event back in line behind its content's unfinished events.

        1: replayed; 0: its record is gone or no longer dead; -1: the run that killed it is
        still being closed (try again in a moment).
        """
        keys, args = self._requeue_call(event)
        return int(await self._requeue(keys=keys, args=args))

    async def requeue_all(self, events: Sequence[Event]) -> list[int]:
        """:meth:`requeue` each of ``events``, in order, in one round trip (plus one when the
        script is not loaded yet); each is checked on its own as in :meth:`requeue`."""
        if not events:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for event in events:
                keys, args = self._requeue_call(event)
                await self._requeue(keys=keys, args=args, client=pipe)
            return [int(done) for done in await pipe.execute()]

    def _requeue_call(self, event: Event) -> tuple[list[str], list[Any]]:
        keys = self.keys
        replayed = dataclasses.replace(event, source="replay")
        script_keys = [
            keys.event(event.id),
            keys.content(event.content_key),
            keys.queue,
            keys.dlq,
            in_progress_key_prefix + event.id,
        ]
        args = [
            event.id,
            replayed.to_json(),
            keys.prefix,
            PROCESS_EVENT,
            JOB_EXPIRY_MS,
            self.retention,
        ]
        return script_keys, args

    async def summaries(self, event_ids: Sequence[str]) -> list[EventRecord]:
        """The records of ``event_ids`` without their stored event (``event_json`` is ``{}``),
        in order; gone ones are left out. One script call per :data:`BATCH` ids."""
        found: list[EventRecord] = []
        width = len(SMALL_FIELDS)
        for first in range(0, len(event_ids), BATCH):
            chunk = event_ids[first : first + BATCH]
            flat = await self._fields(
                keys=[self.keys.event(i) for i in chunk], args=list(SMALL_FIELDS)
            )
            for n, event_id in enumerate(chunk):
                values = flat[n * width : (n + 1) * width]
                fields = {name: _text(v) for name, v in zip(SMALL_FIELDS, values, strict=True) if v}
                if fields:
                    found.append(EventRecord.from_hash(event_id, fields))
        return found

    async def entries(
        self, index: str, count: int, after: Entry | None = None, *, oldest_first: bool = False
    ) -> list[Entry]:
        """Up to ``count`` entries of ``index`` right after ``after`` (from the start without),
        newest first (oldest first with ``oldest_first``). Paged by score and id, so entries
        that arrive or leave meanwhile neither repeat nor hide others."""
        if after is None:
            if oldest_first:
                return _entries(await self.redis.zrange(index, 0, count - 1, withscores=True))
            return _entries(await self.redis.zrevrange(index, 0, count - 1, withscores=True))
        async with self.redis.pipeline(transaction=False) as pipe:
            # Ties (same score) come ordered by id: those past the cursor's id follow it.
            if oldest_first:
                pipe.zrangebyscore(index, after.score, after.score, withscores=True)
                pipe.zrangebyscore(
                    index, f"({after.score}", "+inf", start=0, num=count, withscores=True
                )
            else:
                pipe.zrevrangebyscore(index, after.score, after.score, withscores=True)
                pipe.zrevrangebyscore(
                    index, f"({after.score}", "-inf", start=0, num=count, withscores=True
                )
            ties, rest = await pipe.execute()
        if oldest_first:
            past = [e for e in _entries(ties) if e.member > after.member]
        else:
            past = [e for e in _entries(ties) if e.member < after.member]
        return (past + _entries(rest))[:count]

    async def recent(
        self,
        *,
        index: str | None = None,
        state: str | None = None,
        tenant: str | None = None,
        type_: str | None = None,
        limit: int = 50,
        scan: int | None = None,
        payload: bool = False,
    ) -> list[EventRecord]:
        """Newest first, of ``index`` (default ``events``), filtered on the records' small
        fields: reads at most ``scan`` (default ``20 * limit``) index entries, ``2 * limit``
        first and twice as many each round trip after (at most :data:`BATCH`), and stops at
        ``limit`` matches. Records come without their stored event unless ``payload`` (then
        only the ones returned are read whole)."""
        index = index or self.keys.events
        most = 20 * limit if scan is None else scan
        found: list[EventRecord] = []
        after: Entry | None = None
        size = max(2 * limit, 50)
        while most > 0 and len(found) < limit:
            want = min(BATCH, most, size)
            size *= 2
            batch = await self.entries(index, want, after)
            most -= len(batch)
            for record in await self.summaries([e.member for e in batch]):
                if state and record.state != state:
                    continue
                if tenant and record.tenant != tenant:
                    continue
                if type_ and record.type != type_:
                    continue
                found.append(record)
                if len(found) >= limit:
                    break
            if len(batch) < want:
                break
            after = batch[-1]
        return await self.records([r.id for r in found]) if payload else found
