"""Exactly-once effects, the loop guard and the dry-run record, in Redis.

Every write a reaction makes carries an idempotency key. Before the write the key is marked
``pending``; after it, ``done`` with the result (a comment id, a version). A re-run of the job
finds ``done`` and skips. A ``pending`` record names its owner (the event whose run claimed it)
and a lease (until when that run can still be writing: the job timeout and a margin). A claim
that finds it pending under the same event's earlier attempt, or under an expired lease (the
run died mid-write), asks the caller to check the current page state before writing again; one
that finds another event's live lease (a ``once`` effect shared by two events of one page that
run at the same time) must wait: the write is in flight.

Keys (all under ``settings.redis_prefix``):

- ``effect:<sha256>``                     JSON ``{"state", "result", "at"}``: one of one event
                                          kept while the event may run again (``event_seconds``),
                                          a ``once`` effect shared by events ``EFFECT_TTL``
- ``loopguard:<tenant>:<content>:<name>`` writes of one reaction on one content in the window
- ``memo:<sha256>``                       a value a reaction keeps for re-runs of one event
                                          (``event_seconds``)
- ``reactions:dryrun``                    newest-first JSON list of what dry runs would do
- ``reactions:counts``                    hash ``<reaction>:<outcome>`` -> count (dashboard)
- ``app-accounts:<tenant>``               set of account ids Confluence named as author of our
                                          writes (the app's account there; loop prevention)
- ``app-accounts``                        the same accounts, every tenant's together: an
                                          Atlassian account id names one account everywhere, so
                                          one seen writing for this app is the app's on any site
                                          (one site served under two tenant names, the Connect
                                          clientKey and ``forge:<cloudId>``, as its Connect
                                          install comes and goes)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.atlassian.events import event_id
from app.eventlog import Writes
from app.jobstate import Keys
from app.reconcile_plan import CONTENT_TYPES
from app.reconcile_plan import event_type as version_event_type
from app.settings import Settings

EFFECT_TTL = 30 * 24 * 3600
DRY_RUN_KEEP = 500
State = Literal["new", "pending", "done"]
Claim = Literal["new", "pending", "done", "guard"]

# Before a write, in one round trip: the effect's record if it has one; else, when the loop
# guard allows a write, the record marked pending. KEYS: effect, loop guard. ARGV: guard limit,
# pending JSON, TTL s. Returns {'found', <record JSON>}, {'guard'} or {'new'}.
CLAIM = """
local found = redis.call('GET', KEYS[1])
if found then
  return {'found', found}
end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[1]) then
  return {'guard'}
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return {'new'}
"""


# Replace a pending record only if it is still the one read. KEYS: effect. ARGV: the record
# read, the new pending JSON, TTL s. Returns 1 when replaced.
TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# A pending claim's lease beyond the job timeout (a run cannot write after its timeout).
LEASE_MARGIN_SECONDS = 5.0
DEFAULT_LEASE_SECONDS = 300.0 + LEASE_MARGIN_SECONDS


@dataclass(frozen=True, slots=True)
class Pending:
    """A claim found pending: whose it is, until when its run may still be writing, and the
    record as read (a take-over replaces exactly this one)."""

    owner: str | None  # the claiming event's id (None: a record from before owners)
    until: float | None
    raw: str

    def live(self, now: float) -> bool:
        return self.until is not None and self.until > now


# Beyond the longest an event may run again, for a replay started just before its end.
EFFECT_MARGIN_SECONDS = 24 * 3600


def effect_seconds(settings: Settings) -> int:
    """How long an effect of one event is kept: as long as the event may run again. Its runs
    (retries, waits) end within the event retention, its dead letter (which an operator may
    replay) is kept the dead-letter retention after that; and a day more."""
    return (
        settings.event_retention_seconds
        + settings.dead_letter_retention_seconds
        + EFFECT_MARGIN_SECONDS
    )


def effect_key(tenant: str, *parts: str) -> str:
    """A stable idempotency key; the parts never include secret material."""
    raw = "\x1f".join((tenant, *parts))
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LoopGuardPolicy:
    limit: int = 5
    window_seconds: int = 600


class EffectLedger:
    """Effect records for one deployment (prefix)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        guard: LoopGuardPolicy | None = None,
        after: list[Writes] | None = None,
        seen_seconds: int = 24 * 3600,
        event_seconds: int = EFFECT_TTL,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.redis = redis
        self.after = after
        self.prefix = prefix
        self.guard = guard or LoopGuardPolicy()
        self.seen_seconds = seen_seconds
        # How long an effect or memo of one event is kept: as long as that event may run
        # again (its record, or its dead letter, which can be replayed).
        self.event_seconds = event_seconds
        # How long a pending claim is taken for a write in flight (the job timeout and a margin)
        self.lease_seconds = lease_seconds
        self.dry_run_key = f"{prefix}reactions:dryrun"
        self.counts_key = f"{prefix}reactions:counts"
        self._claim = redis.register_script(CLAIM)
        self._take_over = redis.register_script(TAKE_OVER)

    def _key(self, key: str) -> str:
        return f"{self.prefix}effect:{key}"

    async def wrote_version(self, tenant: str, kind: str, content_id: str, version: int) -> None:
        """Mark a page or blog post version the app wrote as seen, as its delivered event would
        be (the dedupe marker, for the dedupe window): Forge does not deliver the app's own
        edits, and reconciliation would otherwise take the version for a missed change."""
        if kind not in CONTENT_TYPES:
            return  # reconciliation sweeps pages and blog posts only
        type_ = version_event_type(kind, version)  # the type a sweep would give it
        seen = Keys(self.prefix).dedupe(event_id(tenant, type_, content_id, version, 0))
        await self.redis.set(seen, "1", ex=self.seen_seconds)

    def _pending(self, owner: str | None) -> str:
        now = time.time()
        record: dict[str, Any] = {"state": "pending", "at": now}
        if owner is not None:
            record |= {"owner": owner, "until": now + self.lease_seconds}
        return json.dumps(record)

    async def claim(
        self,
        key: str,
        tenant: str,
        content_id: str,
        reaction: str,
        *,
        ttl: int = EFFECT_TTL,
        owner: str | None = None,
    ) -> tuple[Claim, Any]:
        """Before a write: ``done`` (and its result), ``pending`` (and the :class:`Pending`
        found: a run writing now, or one that stopped mid-write), ``guard`` (the loop guard
        refuses), or ``new``: now marked pending, owned by ``owner`` under a lease."""
        guard = self._guard_key(tenant, content_id, reaction)
        reply = await self._claim(
            keys=[self._key(key), guard], args=[self.guard.limit, self._pending(owner), ttl]
        )
        verdict = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        if verdict != "found":
            return ("guard" if verdict == "guard" else "new"), None
        raw = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        data = json.loads(raw)
        if data["state"] == "done":
            return "done", data.get("result")
        until = data.get("until")
        found_owner = data.get("owner")
        return "pending", Pending(
            owner=found_owner if isinstance(found_owner, str) else None,
            until=float(until) if isinstance(until, int | float) else None,
            raw=raw,
        )

    async def take_over(
        self, key: str, found: Pending, *, owner: str, ttl: int = EFFECT_TTL
    ) -> bool:
        """Make a pending claim found (its run died, or is this event's earlier attempt) ours;
        False when another run replaced it since it was read."""
        replaced = await self._take_over(
            keys=[self._key(key)], args=[found.raw, self._pending(owner), ttl]
        )
        return bool(replaced)

    async def applied(
        self,
        key: str,
        result: Any,
        tenant: str,
        content_id: str,
        reaction: str,
        action: str,
        *,
        defer: bool = False,
        ttl: int = EFFECT_TTL,
    ) -> None:
        """After a write: the effect is done; one that changed something (``result`` not None)
        counts towards the loop guard and the reaction's ``action`` count. One round trip, or
        none with ``defer`` when the ledger has an ``after`` list: the job layer sends it with
        the end of the run. (Until then a re-run would find the effect ``pending`` and look for
        it in place before writing, as after a crash.)"""
        value = json.dumps({"state": "done", "result": result, "at": time.time()})
        guard = self._guard_key(tenant, content_id, reaction)

        def add(pipe: Pipeline) -> None:
            pipe.set(self._key(key), value, ex=ttl)
            if result is not None:
                pipe.incr(guard)
                pipe.expire(guard, self.guard.window_seconds, nx=True)
                pipe.hincrby(self.counts_key, f"{reaction}:{action}", 1)

        if defer and self.after is not None:
            self.after.append(add)
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            add(pipe)
            await pipe.execute()

    async def state(self, key: str) -> tuple[State, Any]:
        raw = await self.redis.get(self._key(key))
        if raw is None:
            return "new", None
        data = json.loads(raw)
        return data["state"], data.get("result")

    async def begin(self, key: str, *, ttl: int = EFFECT_TTL) -> None:
        value = json.dumps({"state": "pending", "at": time.time()})
        await self.redis.set(self._key(key), value, ex=ttl)

    async def release(self, key: str) -> None:
        """Forget a claim whose write was refused before it was sent (nothing to look for)."""
        await self.redis.delete(self._key(key))

    async def done(self, key: str, result: Any, *, ttl: int = EFFECT_TTL) -> None:
        value = json.dumps({"state": "done", "result": result, "at": time.time()})
        await self.redis.set(self._key(key), value, ex=ttl)

    def _guard_key(self, tenant: str, content_id: str, reaction: str) -> str:
        return f"{self.prefix}loopguard:{tenant}:{content_id}:{reaction}"

    async def allow_write(self, tenant: str, content_id: str, reaction: str) -> bool:
        """False once a reaction wrote to one content ``limit`` times within the window."""
        count = await self.redis.get(self._guard_key(tenant, content_id, reaction))
        return count is None or int(count) < self.guard.limit

    async def remember(self, key: str, value: str) -> None:
        await self.redis.set(f"{self.prefix}memo:{key}", value, ex=self.event_seconds)

    async def recall(self, key: str) -> str | None:
        raw = await self.redis.get(f"{self.prefix}memo:{key}")
        return None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))

    async def app_accounts(self, tenant: str) -> set[str]:
        """Accounts seen writing our effects: on this tenant's site, and on any site.

        The tenant's own set is also added to the every-site one when it holds accounts that
        one lacks (learned before that set existed), so that the site, served under its other
        tenant name, knows them too.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(f"{self.prefix}app-accounts:{tenant}")
            pipe.smembers(f"{self.prefix}app-accounts")
            here, everywhere = (
                {m.decode() if isinstance(m, bytes) else str(m) for m in raw}
                for raw in await pipe.execute()
            )
        missing = here - everywhere
        if missing:
            await self.redis.sadd(f"{self.prefix}app-accounts", *missing)  # type: ignore[misc]
        return here | everywhere

    async def is_app_account(self, tenant: str, account: str) -> bool:
        """Whether ``account`` wrote for this app, on this tenant's site or any other."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(f"{self.prefix}app-accounts:{tenant}", account)
            pipe.sismember(f"{self.prefix}app-accounts", account)
            found = await pipe.execute()
        return any(found)

    async def learn_app_accounts(self, tenant: str, accounts: set[str]) -> None:
        if accounts:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(f"{self.prefix}app-accounts:{tenant}", *accounts)
                pipe.sadd(f"{self.prefix}app-accounts", *accounts)
                await pipe.execute()

    async def count(self, reaction: str, outcome: str) -> None:
        await self.redis.hincrby(self.counts_key, f"{reaction}:{outcome}", 1)  # type: ignore[misc]

    async def record_dry_run(self, entry: dict[str, Any]) -> None:
        entry = {"at": time.time(), **entry}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.dry_run_key, json.dumps(entry, sort_keys=True))
            pipe.ltrim(self.dry_run_key, 0, DRY_RUN_KEEP - 1)
            await pipe.execute()

    async def dry_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: what dry-run reactions would have done (for the dashboard)."""
        raw = await self.redis.lrange(self.dry_run_key, 0, limit - 1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.counts_key)  # type: ignore[misc]
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
