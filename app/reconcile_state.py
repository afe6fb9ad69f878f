"""What reconciliation keeps in Redis, and what it reads of the pipeline's records.

Keys (``P`` is ``settings.redis_prefix``; ``<slot>`` is ``auto`` for the periodic sweep and
``manual`` for ``reactor reconcile``)::

    P reconcile:watermark:<tenant>        STRING  epoch ms: start of the last completed sweep
    P reconcile:progress:<slot>:<tenant>  HASH    an unfinished sweep: since, started, upper,
                                                  items, found, enqueued, runs, and the
                                                  search under way: cursor (its next page's
                                                  URL), reach, back (epoch ms, ms)
    P reconcile:lock:<tenant>             STRING  one sweep of a tenant at a time (expires)
    P reconcile:trash:<tenant>            SET     ``<page id>:<version>`` in the trash at the
                                                  last completed trash listing (``-`` marks a
                                                  baseline)
    P reconcile:trash-listing:<tenant>    SET     the same, of the listing under way
    P reconcile:trash-progress:<tenant>   HASH    the listing under way: started, cursor (the
                                                  next page's URL), done, listed, calls
    P reconcile:trash-at:<tenant>         STRING  epoch ms: start of the last completed trash
                                                  listing, or when the last one failed (the next
                                                  is due an interval later)
    P reconcile:last:<tenant>             HASH    summary of the last completed sweep
    P reconcile:failed:<tenant>           HASH    failed turns in a row: count, at (epoch ms of
                                                  the last); gone after a turn that worked

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
    """An unfinished sweep of one tenant: enough to resume it after a stop or a crash.

    ``upper``: everything modified after it was finished (the oldest hit finished, or where
    Confluence's lower bound had crept to when a search ended too late). ``cursor``: the next
    page of the search under way, whose query reaches back ``back`` ms from Confluence's
    ``now()`` and still covers the window when evaluated by ``reach``; None to build a query
    from ``upper``.
    """

    since: int
    started: int
    upper: int | None = None
    items: int = 0
    found: int = 0
    enqueued: int = 0
    runs: int = 0
    cursor: str | None = None
    reach: int | None = None
    back: int | None = None

    def to_hash(self) -> dict[str, str]:
        return {
            f.name: "" if getattr(self, f.name) is None else str(getattr(self, f.name))
            for f in fields(self)
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Progress:
        def number(name: str) -> int | None:
            value = raw.get(name)
            return int(value) if value else None

        return cls(
            since=int(raw["since"]),
            started=int(raw["started"]),
            upper=number("upper"),
            items=int(raw.get("items") or 0),
            found=int(raw.get("found") or 0),
            enqueued=int(raw.get("enqueued") or 0),
            runs=int(raw.get("runs") or 0),
            cursor=raw.get("cursor") or None,
            reach=number("reach"),
            back=number("back"),
        )


@dataclass
class TrashProgress:
    """A trash listing under way: resumed at ``cursor`` (None: at its first page) until
    ``done`` (every page listed; the comparison with the last listing is what is left)."""

    started: int
    cursor: str | None = None
    done: bool = False
    listed: int = 0
    calls: int = 0

    def to_hash(self) -> dict[str, str]:
        return {
            "started": str(self.started),
            "cursor": self.cursor or "",
            "done": "1" if self.done else "0",
            "listed": str(self.listed),
            "calls": str(self.calls),
        }

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> TrashProgress:
        return cls(
            started=int(raw["started"]),
            cursor=raw.get("cursor") or None,
            done=raw.get("done") == "1",
            listed=int(raw.get("listed") or 0),
            calls=int(raw.get("calls") or 0),
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

    async def start_over(self, tenant: str, epoch_ms: int) -> None:
        """Sweep ``tenant`` from ``epoch_ms`` on: its watermark moves there and an unfinished
        periodic sweep is dropped (a site enabled again: what changed while the app was off
        is not the app's to react to, as after a reinstall)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("watermark", tenant), str(epoch_ms))
            pipe.delete(self._key("progress", "auto", tenant))
            await pipe.execute()

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

    async def forget(self, tenant: str) -> None:
        """Drop everything kept for ``tenant`` (a site deleted after its uninstall)."""
        names = ("watermark", "lock", "trash", "trash-listing", "trash-progress", "trash-at")
        keys = [self._key(name, tenant) for name in (*names, "last", "failed")]
        keys += [self._key("progress", slot, tenant) for slot in ("auto", "manual")]
        await self.redis.delete(*keys)

    # -- failing turns --------------------------------------------------------------------
    async def turn_failed(self, tenant: str, now_ms: int, keep_seconds: int) -> int:
        """Count a turn of ``tenant`` that failed at ``now_ms``; the failures in a row so far."""
        key = self._key("failed", tenant)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "count", 1)
            pipe.hset(key, "at", str(now_ms))
            pipe.expire(key, keep_seconds)
            count, _, _ = await pipe.execute()
        return int(count)

    async def failures(self, tenant: str) -> tuple[int, int] | None:
        """(failed turns in a row, epoch ms of the last) of ``tenant``; None when its last
        turn worked."""
        raw = await self.redis.hmget(self._key("failed", tenant), ["count", "at"])  # type: ignore[misc]
        if raw[0] is None or raw[1] is None:
            return None
        return int(raw[0]), int(raw[1])

    async def turn_worked(self, tenant: str) -> None:
        await self.redis.delete(self._key("failed", tenant))

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

    # -- trash listings -------------------------------------------------------------------
    async def trash(self, tenant: str) -> set[str] | None:
        """Members at the last completed listing; None before the first one."""
        members = {_text(m) for m in await self.redis.smembers(self._key("trash", tenant))}  # type: ignore[misc]
        if not members:
            return None
        members.discard(BASELINE)
        return members

    async def trash_progress(self, tenant: str) -> TrashProgress | None:
        raw = await self.redis.hgetall(self._key("trash-progress", tenant))  # type: ignore[misc]
        if not raw:
            return None
        return TrashProgress.from_hash({_text(k): _text(v) for k, v in raw.items()})

    async def trash_at(self, tenant: str) -> int | None:
        """Start of the last completed listing, or when one last failed; None before any."""
        raw = await self.redis.get(self._key("trash-at", tenant))
        return None if raw is None else int(raw)

    async def begin_trash(self, tenant: str, progress: TrashProgress) -> None:
        """A new listing: nothing listed yet (an empty trash is a baseline too)."""
        listing = self._key("trash-listing", tenant)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(listing)
            pipe.sadd(listing, BASELINE)
            pipe.hset(self._key("trash-progress", tenant), mapping=progress.to_hash())
            await pipe.execute()

    async def add_trash_page(
        self, tenant: str, members: Iterable[str], progress: TrashProgress
    ) -> None:
        """One page of the listing, with where the next one starts."""
        listed = list(members)
        async with self.redis.pipeline(transaction=True) as pipe:
            if listed:
                pipe.sadd(self._key("trash-listing", tenant), *listed)
            pipe.hset(self._key("trash-progress", tenant), mapping=progress.to_hash())
            await pipe.execute()

    async def trash_diff(self, tenant: str) -> tuple[set[str], set[str]] | None:
        """(entered, left): members of the listing not in the last one, and the reverse;
        None when there is no last listing (this one is the baseline)."""
        before, now = self._key("trash", tenant), self._key("trash-listing", tenant)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(before)
            pipe.sdiff([now, before])
            pipe.sdiff([before, now])
            had, entered, left = await pipe.execute()
        if not had:
            return None
        return {_text(m) for m in entered}, {_text(m) for m in left}

    async def finish_trash(self, tenant: str, progress: TrashProgress) -> None:
        """The listing becomes the one the next compares with; the next is due an interval
        after this one's start."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rename(self._key("trash-listing", tenant), self._key("trash", tenant))
            pipe.delete(self._key("trash-progress", tenant))
            pipe.set(self._key("trash-at", tenant), str(progress.started))
            await pipe.execute()

    async def abandon_trash(self, tenant: str, failed_ms: int) -> None:
        """Drop a listing that failed; the last completed one stays, and the next listing is
        due an interval after the failure."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("trash-listing", tenant))
            pipe.delete(self._key("trash-progress", tenant))
            pipe.set(self._key("trash-at", tenant), str(failed_ms))
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
