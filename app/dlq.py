"""The dead-letter store: events whose attempts ran out, kept with every attempt's error.

Dead events stay in ``P dlq`` (a ZSET by time of death) and their records; see
:mod:`app.jobstate`. Operators list and inspect them, replay them (one, by filter, or all),
or discard them, from ``reactor dlq`` and the ops API. A replayed event keeps its id, runs
with ``source="replay"``, starts a fresh attempt count and takes its place in its content's
line like a new arrival.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from app.atlassian.events import Event
from app.eventlog import Entry, EventLog, now_ms
from app.jobstate import Attempt, EventRecord
from app.settings import Settings

Replay = Literal["replayed", "not_dead", "closing"]
# How long a replay waits for arq to close the run that dead-lettered the event.
CLOSING_TRIES = 40
CLOSING_WAIT_SECONDS = 0.05
# Dead letters read, replayed or discarded per round trip (or few) by the bulk operations.
BATCH = 500
DISCARDED = "discarded by an operator"


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

    async def find(
        self, where: Filter | None = None, limit: int = 100, *, payload: bool = False
    ) -> list[EventRecord]:
        """Newest deaths first, at most ``limit``: the ``dlq`` index is read :data:`BATCH`
        entries at a time, filtered on the records' small fields, until ``limit`` match.
        Records come without their stored event unless ``payload``."""
        found: list[EventRecord] = []
        async for batch in self._batches(where, oldest_first=False, first=2 * limit):
            found.extend(batch[: limit - len(found)])
            if len(found) >= limit:
                break
        return await self.log.records([r.id for r in found]) if payload else found

    async def _batches(
        self,
        where: Filter | None,
        *,
        oldest_first: bool,
        until: int | None = None,
        first: int = BATCH,
    ) -> AsyncIterator[list[EventRecord]]:
        """The dead letters ``where`` matches, without their stored events, a batch per slice
        of the index: ``first`` entries (at least 50), then twice as many each time, up to
        :data:`BATCH`. With ``until`` (epoch ms), none that died after it."""
        where = where or Filter()
        after: Entry | None = None
        size = min(BATCH, max(50, first))
        while True:
            entries = await self.log.entries(
                self.log.keys.dlq, size, after, oldest_first=oldest_first
            )
            if until is not None:
                entries = [e for e in entries if e.score <= until]
            if not entries:
                return
            records = await self.log.summaries([e.member for e in entries])
            yield [r for r in records if r.state == "dead" and where.matches(r)]
            if len(entries) < size:
                return
            after, size = entries[-1], min(BATCH, 2 * size)

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
        return (await self.replay_ids([event_id]))[event_id]

    async def replay_ids(self, event_ids: Sequence[str]) -> dict[str, Replay]:
        """:meth:`replay` each of ``event_ids``, in order, :data:`BATCH` per round trip."""
        outcomes: dict[str, Replay] = {}
        unique = list(dict.fromkeys(event_ids))
        for first in range(0, len(unique), BATCH):
            chunk = unique[first : first + BATCH]
            records = [r for r in await self.log.records(chunk) if r.state == "dead"]
            missing: Replay = "not_dead"
            outcomes |= dict.fromkeys(chunk, missing) | await self._requeue(records)
        return outcomes

    async def _requeue(self, records: list[EventRecord]) -> dict[str, Replay]:
        # The state is checked again in the script that moves each one: a replay or discard
        # made meanwhile wins. An event dead-lettered a moment ago may still have its run being
        # closed by arq; that takes milliseconds, so it is waited for (within a bound). Such an
        # event is its content's latest death, so replaying it after the others of its content
        # keeps their order.
        outcomes: dict[str, Replay] = {}
        pending = records
        for attempt in range(CLOSING_TRIES):
            if attempt:
                await asyncio.sleep(CLOSING_WAIT_SECONDS)
            done = await self.log.requeue_all([Event.from_json(r.event_json) for r in pending])
            for record, outcome in zip(pending, done, strict=True):
                if outcome >= 0:
                    outcomes[record.id] = "replayed" if outcome == 1 else "not_dead"
            pending = [r for r, outcome in zip(pending, done, strict=True) if outcome < 0]
            if not pending:
                break
        return outcomes | dict.fromkeys((r.id for r in pending), "closing")

    async def retry_all(self, where: Filter | None = None) -> list[str]:
        """Replay every dead event matching ``where``, oldest death first (arrival order), in
        batches of :data:`BATCH` (a few round trips each). Deaths after the call began are
        left for the next one."""
        replayed: list[str] = []
        async for batch in self._batches(where, oldest_first=True, until=await self._newest()):
            full = [r for r in await self.log.records([r.id for r in batch]) if r.state == "dead"]
            outcomes = await self._requeue(full)
            replayed += [r.id for r in full if outcomes.get(r.id) == "replayed"]
        return replayed

    async def discard(self, event_id: str) -> bool:
        """Drop a dead event for good (its record says ``discarded`` until it expires);
        False when it is not in the store (any more: a replay made meanwhile wins)."""
        return bool(await self.discard_ids([event_id]))

    async def discard_ids(self, event_ids: Sequence[str]) -> list[str]:
        """:meth:`discard` each of ``event_ids``, :data:`BATCH` per round trip; the ids
        discarded, in order."""
        discarded: list[str] = []
        unique = list(dict.fromkeys(event_ids))
        for first in range(0, len(unique), BATCH):
            chunk = unique[first : first + BATCH]
            records = [r for r in await self.log.summaries(chunk) if r.state == "dead"]
            discarded += await self._discard(records)
        return discarded

    async def _discard(self, records: list[EventRecord]) -> list[str]:
        ended = await self.log.end_dead(records, "discarded", DISCARDED)
        return [r.id for r, done in zip(records, ended, strict=True) if done]

    async def discard_all(self, where: Filter | None = None) -> list[str]:
        """Discard every dead event matching ``where``, in batches of :data:`BATCH` (a few
        round trips each). Deaths after the call began are left for the next one."""
        discarded: list[str] = []
        async for batch in self._batches(where, oldest_first=True, until=await self._newest()):
            discarded += await self._discard(batch)
        return discarded

    async def _newest(self) -> int:
        """The time of the latest death held (0: none)."""
        newest = await self.redis.zrevrange(self.log.keys.dlq, 0, 0, withscores=True)
        return int(newest[0][1]) if newest else 0
