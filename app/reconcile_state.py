"""What reconciliation keeps in Redis, and what it reads of the pipeline's records.

Keys (``P`` is ``settings.redis_prefix``; ``<slot>`` is ``auto`` for the periodic sweep and
``manual`` for ``reactor reconcile``)::

    P reconcile:watermark:<tenant>        STRING  epoch ms: start of the last completed sweep
    P reconcile:progress:<slot>:<tenant>  HASH    an unfinished sweep: since, started, upper,
                                                  items, found, enqueued, runs
    P reconcile:lock:<tenant>             STRING  one sweep of a tenant at a time (expires)
    P reconcile:trash:<tenant>            SET     ``<page id>:<version>`` in the trash at the
                                                  last completed sweep (``-`` marks a baseline)
    P reconcile:last:<tenant>             HASH    summary of the last completed sweep

Seen versions are read from the pipeline's own keys (:mod:`app.jobstate`): a version counts as
seen while its dedupe marker (``P seen:<id>``, the dedupe window) or its event record
(``P event:<id>``, ``REACTOR_EVENT_RETENTION_SECONDS``) exists, for either event type of
that version.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from redis.asyncio import Redis

from app.atlassian.events import event_id
from app.jobstate import Keys

BASELINE = "-"
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Progress:
    """An unfinished sweep of one tenant: enough to resume it after a stop or a crash."""

    since: int
    started: int
    upper: int | None = None
    items: int = 0
    found: int = 0
    enqueued: int = 0
    runs: int = 0

    def to_hash(self) -> dict[str, str]:
        return {
            f.name: "" if getattr(self, f.name) is None else str(getattr(self, f.name))
            for f in fields(self)
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Progress:
        upper = raw.get("upper")
        return cls(
            since=int(raw["since"]),
            started=int(raw["started"]),
            upper=int(upper) if upper else None,
            items=int(raw.get("items") or 0),
            found=int(raw.get("found") or 0),
            enqueued=int(raw.get("enqueued") or 0),
            runs=int(raw.get("runs") or 0),
        )


class ReconcileState:
    """Watermarks, progress, locks and trash snapshots of the sweeps, per tenant."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.pipeline_keys = Keys(prefix)
        self._unlock = redis.register_script(_UNLOCK)
        self._extend = redis.register_script(_EXTEND)

    def _key(self, *parts: str) -> str:
        return self.prefix + "reconcile:" + ":".join(parts)

    # -- watermark and progress ---------------------------------------------------------
    async def watermark(self, tenant: str) -> int | None:
        raw = await self.redis.get(self._key("watermark", tenant))
        return None if raw is None else int(raw)

    async def set_watermark(self, tenant: str, epoch_ms: int) -> None:
        await self.redis.set(self._key("watermark", tenant), str(epoch_ms))

    async def progress(self, slot: str, tenant: str) -> Progress | None:
        raw = await self.redis.hgetall(self._key("progress", slot, tenant))  # type: ignore[misc]
        if not raw:
            return None
        return Progress.from_hash({_text(k): _text(v) for k, v in raw.items()})

    async def save_progress(self, slot: str, tenant: str, progress: Progress) -> None:
        await self.redis.hset(self._key("progress", slot, tenant), mapping=progress.to_hash())  # type: ignore[misc]

    async def complete(
        self, slot: str, tenant: str, progress: Progress, finished_ms: int, *, advance: bool
    ) -> None:
        """End a sweep: drop its progress, keep its summary, advance the watermark if asked."""
        summary = {**progress.to_hash(), "finished": str(finished_ms), "slot": slot}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("progress", slot, tenant))
            pipe.hset(self._key("last", tenant), mapping=summary)
            if advance:
                pipe.set(self._key("watermark", tenant), str(progress.started))
            await pipe.execute()

    async def last(self, tenant: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self._key("last", tenant))  # type: ignore[misc]
        return {_text(k): _text(v) for k, v in raw.items()}

    # -- one sweep per tenant -------------------------------------------------------------
    async def lock(self, tenant: str, ttl_seconds: float) -> str | None:
        token = uuid.uuid4().hex
        got = await self.redis.set(
            self._key("lock", tenant), token, nx=True, px=max(1, int(ttl_seconds * 1000))
        )
        return token if got else None

    async def extend(self, tenant: str, token: str, ttl_seconds: float) -> bool:
        """Keep holding the lock (a long sweep); False when it was lost."""
        done = await self._extend(
            keys=[self._key("lock", tenant)], args=[token, max(1, int(ttl_seconds * 1000))]
        )
        return bool(done)

    async def unlock(self, tenant: str, token: str) -> None:
        await self._unlock(keys=[self._key("lock", tenant)], args=[token])

    # -- trash snapshot -------------------------------------------------------------------
    async def trash(self, tenant: str) -> set[str] | None:
        """Members at the last completed sweep; None before the first snapshot."""
        members = {_text(m) for m in await self.redis.smembers(self._key("trash", tenant))}  # type: ignore[misc]
        if not members:
            return None
        members.discard(BASELINE)
        return members

    async def set_trash(self, tenant: str, members: Iterable[str]) -> None:
        key = self._key("trash", tenant)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.sadd(key, BASELINE, *members)
            await pipe.execute()

    # -- what the pipeline saw ------------------------------------------------------------
    def _version_keys(
        self, tenant: str, types: Sequence[str], content_id: str, v: int
    ) -> list[str]:
        keys = self.pipeline_keys
        ids = [event_id(tenant, t, content_id, v, 0) for t in types]
        return [k for i in ids for k in (keys.dedupe(i), keys.event(i))]

    async def seen(
        self, tenant: str, asks: Sequence[tuple[Sequence[str], str, Sequence[int]]]
    ) -> list[set[int]]:
        """For each ``(event types, content id, versions)``: the versions the pipeline saw."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for types, content_id, versions in asks:
                for v in versions:
                    pipe.exists(*self._version_keys(tenant, types, content_id, v))
            counts = iter(await pipe.execute())
        return [{v for v in versions if next(counts)} for _, _, versions in asks]
