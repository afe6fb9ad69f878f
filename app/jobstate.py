"""Where every event of the pipeline lives in Redis, and the state transitions of its job.

Keys (``P`` is ``settings.redis_prefix``; arq's ``arq:job:<id>`` is the one key without it)::

    P seen:<id>             STRING  dedupe marker, TTL = dedupe window (outlives the job)
    P event:<id>            HASH    event (JSON), state, reason, attempts, received, updated,
                                    next_run (epoch ms), tenant, type, content, replays
    P attempts:<id>         LIST    one JSON object per attempt: n, started, duration_ms,
                                    outcome (retry|dead|interrupted), error
    P content:<tenant>:<content id>
                            LIST    ids of this content's unfinished events, in arrival
                                    order; only the head has an arq job (per-content order)
    P events                ZSET    every recorded event id, score = received (epoch ms)
    P dlq                   ZSET    dead-lettered ids, score = time of death (epoch ms)
    P failing               ZSET    ids of events waiting to be retried (state failed),
                                    score = when marked (epoch ms); app.eventlog keeps it
    P queue                 ZSET    arq's queue: job id (= event id) -> run at (epoch ms)
    arq:job:<id>            STRING  arq job, JSON {"f": "process_event", "a": [<id>], ...}

States (field ``state`` of ``P event:<id>``)::

    received ─▶ queued ─▶ running ─▶ done
    (behind an     ▲         ├──▶ failed (retry scheduled, next_run) ─▶ queued ...
     earlier event │         ├──▶ deferred (reason; not an attempt)  ─▶ queued ...
     of the same   │         ├──▶ dead (in P dlq) ─▶ discarded, or replayed ─▶ queued
     content)      │         └──▶ superseded (a newer event of the same content waits)
                   └── an earlier event of the same content finished

Records keep ``REACTOR_EVENT_RETENTION_SECONDS`` after their last change (dead ones
``REACTOR_DEAD_LETTER_RETENTION_SECONDS``); the ``events`` index is trimmed to the first age
whenever a job finishes, the ``dlq`` index to the second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PROCESS_EVENT = "process_event"
JOB_EXPIRY_MS = 7 * 24 * 3600 * 1000
TERMINAL_STATES = frozenset({"done", "dead", "superseded", "discarded"})
STATES = ("received", "queued", "running", "failed", "deferred", *sorted(TERMINAL_STATES))


class Keys:
    """Every Redis key of the pipeline, derived from the prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = f"{prefix}queue"
        self.events = f"{prefix}events"
        self.dlq = f"{prefix}dlq"

    def dedupe(self, event_id: str) -> str:
        return f"{self.prefix}seen:{event_id}"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    def attempts(self, event_id: str) -> str:
        return f"{self.prefix}attempts:{event_id}"

    def content(self, content_key: str) -> str:
        return f"{self.prefix}content:{content_key}"

    @staticmethod
    def arq_job(job_id: str) -> str:
        return f"arq:job:{job_id}"


# Shared Lua: the server's time in ms, and the arq job (JSON) of event `id`.
_JOB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function write_job(id, fn, expiry, now)
  local job = cjson.encode({t = cjson.null, f = fn, a = {id}, k = {}, et = now})
  redis.call('SET', 'arq:job:' .. id, job, 'PX', expiry)
end
"""

# Shared Lua: schedule the arq job of event `id` now, unless it is already queued.
_SCHEDULE = (
    _JOB
    + """
local function schedule(prefix, queue, id, fn, expiry, now)
  write_job(id, fn, expiry, now)
  redis.call('ZADD', queue, 'NX', now, id)
  redis.call('HSET', prefix .. 'event:' .. id, 'state', 'queued', 'updated', now)
end
"""
)

# Stores a batch of events, each atomically (the script runs as one unit).
# ARGV: prefix, dedupe ttl s, record ttl s, function, job expiry ms, activity keep s, then per
# event: id, event json, tenant, type, content key, counted source ('' = not counted), alias
# ('' = none: an id the same change may have been stored under, app.atlassian.events.alias_id).
# Returns one 1 (stored) or 0 (duplicate: its id or its alias was seen, or its record is still
# waiting, running or dead: redelivered after the dedupe window) per event. A counted
# event also bumps the per-minute activity counters (app.metrics.Activity: received:<src>,
# accepted:<src>, duplicate:<src>), added once per source and batch.
# Redis time goes mostly to calls, so each stored event costs six (the dedupe key, the state
# read, the line and its expiry, the record and its expiry; seven when it heads its content's
# line and gets its arq job, one more for a label event's alias): the record is written once
# with its final state, and the index and queue entries of the whole batch go in one ZADD
# each (in chunks of 512 ids).
# Keys are derived here from the prefix: fine on standalone and Sentinel Redis (as arq).
PUT = (
    _JOB
    + """
local prefix, dedupe_ttl, ttl, fn, expiry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local queue, index = prefix .. 'queue', prefix .. 'events'
local now = now_ms()
local activity = prefix .. 'activity:' .. math.floor(now / 60000)
local counts = {}  -- per counted source: {received and accepted, duplicate}, written once
local stored = {}
local indexed, heads = {}, {}
-- A record in one of these states is still in its content's line: the same id delivered
-- again after the dedupe window (a site disabled for days, workers down) is a duplicate, never
-- a second entry of the line under the same id.
-- A dead one is held for the operator (replay or discard): a redelivery is a duplicate too.
local waiting = {received = true, queued = true, running = true, failed = true, deferred = true,
  dead = true}
local function add_all(key, flag, members)
  for first = 1, #members, 512 do
    local last = math.min(first + 511, #members)
    if flag then
      redis.call('ZADD', key, flag, unpack(members, first, last))
    else
      redis.call('ZADD', key, unpack(members, first, last))
    end
  end
end
for i = 7, #ARGV, 7 do
  local id, content, source, alias = ARGV[i], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local tally = nil
  if source ~= '' then
    tally = counts[source]
    if tally == nil then
      tally = {0, 0}
      counts[source] = tally
    end
    tally[1] = tally[1] + 1
  end
  local record = prefix .. 'event:' .. id
  if (alias ~= '' and redis.call('EXISTS', prefix .. 'seen:' .. alias) == 1)
      or redis.call('SET', prefix .. 'seen:' .. id, '1', 'NX', 'EX', dedupe_ttl) == false
      or waiting[redis.call('HGET', record, 'state') or ''] then
    if tally then
      tally[2] = tally[2] + 1
    end
    stored[#stored + 1] = 0
  else
    local line = prefix .. 'content:' .. content
    local head = redis.call('RPUSH', line, id) == 1
    redis.call('EXPIRE', line, ttl)
    if not head then
      -- The line lives on while its content changes: so does its head's record, or a head
      -- that outwaited the retention (workers down) would hold the line for ever, unrunnable.
      redis.call('EXPIRE', prefix .. 'event:' .. redis.call('LINDEX', line, 0), ttl)
    end
    redis.call('HSET', record, 'event', ARGV[i + 1], 'state', head and 'queued' or 'received',
      'attempts', 0, 'received', now, 'updated', now, 'tenant', ARGV[i + 2],
      'type', ARGV[i + 3], 'content', content)
    redis.call('EXPIRE', record, ttl)
    indexed[#indexed + 1] = now
    indexed[#indexed + 1] = id
    if head then
      write_job(id, fn, expiry, now)
      heads[#heads + 1] = now
      heads[#heads + 1] = id
    end
    stored[#stored + 1] = 1
  end
end
add_all(index, nil, indexed)
add_all(queue, 'NX', heads)
local counted = false
for source, tally in pairs(counts) do
  redis.call('HINCRBY', activity, 'received:' .. source, tally[1])
  redis.call('HINCRBY', activity, 'accepted:' .. source, tally[1])
  if tally[2] > 0 then
    redis.call('HINCRBY', activity, 'duplicate:' .. source, tally[2])
  end
  counted = true
end
if counted then
  redis.call('EXPIRE', activity, ARGV[6])
end
return stored
"""
)

# Starts a run: returns the record as it was (flat HGETALL) and marks it running, unless it is
# gone, holds no content or has ended. With want_later = '1' it also returns the types of the
# events waiting behind it in its content's line (up to max_later of them), for superseding.
# Shared by BEGIN and the worker's claim script (workers.claims), which starts the runs of the
# events it claims in the same round trip.
BEGIN_FUNCTION = """
local function begin_run(prefix, id, want_later, max_later)
  local key = prefix .. 'event:' .. id
  local record = redis.call('HGETALL', key)
  local fields = {}
  for i = 1, #record, 2 do
    fields[record[i]] = record[i + 1]
  end
  local later = {}
  local state, content = fields['state'], fields['content']
  if not content or content == '' or state == 'done' or state == 'dead'
      or state == 'superseded' or state == 'discarded' then
    return {record, later}
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', key, 'state', 'running', 'reason', '', 'updated', now)
  redis.call('HDEL', key, 'next_run')
  if want_later == '1' then
    -- The running event heads its line (only heads have jobs): read just what follows it,
    -- never the whole line (a page edited all day while its head waits has a long one).
    local line, most = prefix .. 'content:' .. content, tonumber(max_later)
    local ids = redis.call('LRANGE', line, 0, most)
    if ids[1] ~= id then
      local at = redis.call('LPOS', line, id)
      ids = at and redis.call('LRANGE', line, at, at + most) or {}
    end
    for i = 2, #ids do
      later[#later + 1] = redis.call('HGET', prefix .. 'event:' .. ids[i], 'type') or ''
    end
  end
  return {record, later}
end
"""

# ARGV: prefix, id, want later types ('1'|'0'), how many at most. Returns {record, later}.
BEGIN = BEGIN_FUNCTION + "return begin_run(ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"

# Ends an event (done, dead, superseded, discarded) and starts the next of its content. A next
# event whose record expired while it waited is ended too (discarded, reason ARGV[9]) and the
# one behind it is tried, up to ARGV[10] of them.
# KEYS: event, content list, queue, dlq, events index.
# ARGV: id, state, reason, prefix, function, job expiry ms, record ttl s, index age s,
# reason for an expired record, most records to skip, state the record must be in ('' = any).
# Returns {id of the event scheduled next or false, {ids skipped}}, or {false, {}, 0} when the
# record is not in the required state (nothing changed).
FINISH = (
    _SCHEDULE
    + """
if ARGV[11] and ARGV[11] ~= '' and redis.call('HGET', KEYS[1], 'state') ~= ARGV[11] then
  return {false, {}, 0}
end
local now = now_ms()
local prefix = ARGV[4]
local function close(record, id, state, reason, ttl)
  redis.call('HSET', record, 'state', state, 'reason', reason, 'updated', now)
  redis.call('HDEL', record, 'next_run')
  redis.call('EXPIRE', record, ttl)
  redis.call('EXPIRE', prefix .. 'attempts:' .. id, ttl)
  if state == 'dead' then
    redis.call('ZADD', KEYS[4], now, id)
  else
    redis.call('ZREM', KEYS[4], id)
  end
end
close(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[8]) * 1000)
if ARGV[2] == 'dead' then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[7]) * 1000)
end
local head = redis.call('LINDEX', KEYS[2], 0)
redis.call('LREM', KEYS[2], 1, ARGV[1])
local skipped = {}
if head ~= ARGV[1] then
  return {false, skipped}
end
local nxt = redis.call('LINDEX', KEYS[2], 0)
while nxt and #skipped < tonumber(ARGV[10])
    and redis.call('HEXISTS', prefix .. 'event:' .. nxt, 'event') == 0 do
  close(prefix .. 'event:' .. nxt, nxt, 'discarded', ARGV[9], ARGV[8])
  redis.call('LREM', KEYS[2], 1, nxt)
  skipped[#skipped + 1] = nxt
  nxt = redis.call('LINDEX', KEYS[2], 0)
end
if not nxt then
  return {false, skipped}
end
if redis.call('HEXISTS', prefix .. 'event:' .. nxt, 'event') == 0 then
  -- Still an expired one after the most one step may skip: scheduled as a stub that names its
  -- line and expires, which the worker running it ends like these (never a record kept for
  -- ever, never a line left without a scheduled head).
  local stub = prefix .. 'event:' .. nxt
  redis.call('HSET', stub, 'content', string.sub(KEYS[2], #prefix + 9))
  redis.call('EXPIRE', stub, ARGV[8])
end
schedule(prefix, KEYS[3], nxt, ARGV[5], ARGV[6], now)
return {nxt, skipped}
"""
)

# Puts a dead event back in line (replay from the dead-letter store), checking its state in the
# same step as the move, so a concurrent replay or discard of it finds it no longer dead. A
# replay is listed as a fresh arrival in the events index (a dead letter outlives the index).
# KEYS: event, content list, queue, dlq, arq's in-progress key of the event's job.
# ARGV: id, event json, prefix, function, job expiry ms, record ttl s.
# Returns 1; 0 when the record is gone or not dead; -1 while the run that killed it is still
# being closed by arq (its in-progress key is held until arq has removed the old job, which
# would otherwise take the new one's queue entry with it).
REQUEUE = (
    _SCHEDULE
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'dead' then
  return 0
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  return -1
end
local now = now_ms()
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[1], 'event', ARGV[2], 'state', 'received', 'attempts', 0,
  'reason', 'replayed', 'updated', now, 'replayed_at', now)
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', ARGV[3] .. 'events', now, ARGV[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
if redis.call('RPUSH', KEYS[2], ARGV[1]) == 1 then
  schedule(ARGV[3], KEYS[3], ARGV[1], ARGV[4], ARGV[5], now)
else
  -- Behind other events: it must have no job of its own until it heads the line. A worker
  -- that died between dead-lettering it and arq's close leaves its old job queued, which
  -- would otherwise run it beside the head.
  redis.call('DEL', 'arq:job:' .. ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job that did not succeed."""

    n: int
    started: int
    duration_ms: int
    outcome: str
    error: str
    replay: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "n": self.n,
                "started": self.started,
                "duration_ms": self.duration_ms,
                "outcome": self.outcome,
                "error": self.error,
                "replay": self.replay,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Attempt:
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """What the pipeline knows about one event: a row of the dashboard."""

    id: str
    state: str
    reason: str
    attempts: int
    received: int
    updated: int
    tenant: str
    type: str
    content: str
    next_run: int | None
    replays: int
    event_json: str
    replayed_at: int = 0  # when an operator last replayed it (epoch ms), 0 if never

    @classmethod
    def from_hash(cls, event_id: str, data: dict[str, str]) -> EventRecord:
        next_run = data.get("next_run")
        return cls(
            id=event_id,
            state=data.get("state", ""),
            reason=data.get("reason", ""),
            attempts=int(data.get("attempts", 0)),
            received=int(data.get("received", 0)),
            updated=int(data.get("updated", 0)),
            tenant=data.get("tenant", ""),
            type=data.get("type", ""),
            content=data.get("content", ""),
            next_run=int(next_run) if next_run else None,
            replays=int(data.get("replays", 0)),
            event_json=data.get("event", "{}"),
            replayed_at=int(data.get("replayed_at") or 0),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields without the raw payload."""
        return {
            "id": self.id,
            "state": self.state,
            "reason": self.reason,
            "attempts": self.attempts,
            "received": self.received,
            "updated": self.updated,
            "tenant": self.tenant,
            "type": self.type,
            "content": self.content,
            "next_run": self.next_run,
            "replays": self.replays,
        }
