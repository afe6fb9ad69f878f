"""The dead-letter store: events whose attempts ran out, kept with every attempt's error.

Dead events stay in ``P dlq`` (a ZSET by time of death) and their records; see
:mod:`app.jobstate`. Operators list and inspect them, replay them (one, by filter, or all),
or discard them, from ``reactor dlq`` and the ops API. A replayed event keeps its id, runs
with ``source="replay"``, starts a fresh attempt count and takes its place in its content's
line like a new arrival.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from app.atlassian.events import Event
from app.eventlog import EventLog, now_ms
from app.jobstate import Attempt, EventRecord
from app.settings import Settings

Replay = Literal["replayed", "not_dead", "closing"]
# How long a replay waits for arq to close the run that dead-lettered the event.
CLOSING_TRIES = 40
CLOSING_WAIT_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: EventRecord
    attempts: list[Attempt]

    @property
    def event(self) -> Event:
        return Event.from_json(self.record.event_json)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters an operation applies to; empty fields match everything."""

    tenant: str | None = None
    type: str | None = None

    def matches(self, record: EventRecord) -> bool:
        if self.tenant and record.tenant != self.tenant:
            return False
        return not (self.type and record.type != self.type)


class DeadLetters:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.log = EventLog(redis, settings)

    async def count(self) -> int:
        """Dead letters held: deaths within the dead-letter retention (older ones have expired;
        the index forgets them at the next death)."""
        oldest = now_ms() - self.log.dead_retention * 1000
        return int(await self.redis.zcount(self.log.keys.dlq, oldest, "+inf"))

    async def find(self, where: Filter | None = None, limit: int = 100) -> list[EventRecord]:
        """Newest deaths first."""
        where = where or Filter()
        ids = await self.redis.zrevrange(self.log.keys.dlq, 0, -1)
        found: list[EventRecord] = []
        for record in await self.log.records([i.decode() for i in ids]):
            if record.state == "dead" and where.matches(record):
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    async def show(self, event_id: str) -> DeadLetter | None:
        record = await self.log.record(event_id)
        if record is None or record.state != "dead":
            return None
        return DeadLetter(record, await self.log.attempts(event_id))

    async def retry(self, event_id: str) -> bool:
        """Replay one dead event; False when it is not in the store (any more) or its last
        run is still being closed (:meth:`replay` tells which)."""
        return await self.replay(event_id) == "replayed"

    async def replay(self, event_id: str) -> Replay:
        """Replay one dead event: ``replayed``, ``not_dead`` (not in the store, any more), or
        ``closing`` (the worker that ran it last has not closed that run yet: try again)."""
        record = await self.log.record(event_id)
        if record is None or record.state != "dead":
            return "not_dead"
        return await self._requeue(record)

    async def _requeue(self, record: EventRecord) -> Replay:
        # The state is checked again in the script that moves it: a replay or discard made
        # meanwhile wins. An event dead-lettered a moment ago may still have its run being
        # closed by arq; that takes milliseconds, so it is waited for (within a bound).
        event = Event.from_json(record.event_json)
        for _ in range(CLOSING_TRIES):
            outcome = await self.log.requeue(event)
            if outcome >= 0:
                return "replayed" if outcome == 1 else "not_dead"
            await asyncio.sleep(CLOSING_WAIT_SECONDS)
        return "closing"

    async def retry_all(self, where: Filter | None = None) -> list[str]:
        """Replay every dead event matching ``where``, oldest death first (arrival order)."""
        records = await self.find(where, limit=1_000_000)
        replayed = []
        for record in reversed(records):
            if await self._requeue(record) == "replayed":
                replayed.append(record.id)
        return replayed

    async def discard(self, event_id: str) -> bool:
        """Drop a dead event for good (its record says ``discarded`` until it expires);
        False when it is not in the store (any more: a replay made meanwhile wins)."""
        record = await self.log.record(event_id)
        if record is None or record.state != "dead":
            return False
        finished = await self.log.finish(
            event_id, record.content, "discarded", "discarded by an operator", only_if="dead"
        )
        return finished.ended

    async def discard_all(self, where: Filter | None = None) -> list[str]:
        discarded = []
        for record in await self.find(where, limit=1_000_000):
            if await self.discard(record.id):
                discarded.append(record.id)
        return discarded
