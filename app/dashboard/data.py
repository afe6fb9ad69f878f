"""The dashboard's read model: everything the pages, the ops API and the CLI show.

It reads through the owners' public functions where they exist (``app.queue.EventQueue``,
and the pipeline, budget, tenant and reaction modules as they land). Where a source offers no
function for what the dashboard needs, a small read function lives here and is marked
``# read-only view of <owner>'s keys``. arq's own keys (``arq:job:<id>``,
``arq:in-progress:<id>``, ``arq:result:<id>``, ``arq:retry:<id>``) are read directly: they are
arq's public storage format and our job ids are event ids.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from redis.asyncio import Redis

from app.atlassian.events import Event
from app.dashboard.calls import read_calls
from app.eventlog import BATCH, Entry, EventLog
from app.jobstate import EventRecord
from app.masking import mask_secrets
from app.queue import EventQueue
from app.settings import Settings

RUNNING_SCAN_LIMIT = 1000
# The job states queue_counts counts (beside them it gives the queue's lag).
QUEUE_STATES = ("queued", "running", "deferred")
STATE_SAMPLE = 2000
DEFAULT_PAGE = 100
MAX_PAGE = 500
# Index entries one page may read looking for matches: 20 per row shown (200 for the tenant
# and content filters, which match fewer), never more than MAX_SCAN.
SCAN_PER_ROW = 20
SCAN_PER_ROW_SPARSE = 200
MAX_SCAN = 20_000
# Dead letters, and failing events, the Overview's failing panels look through (newest first).
FAILING_SAMPLE = 500

# KEYS: event record hashes. Returns state, reason (first 60 bytes), updated, source for each,
# flat, without shipping the stored events. Fast path: Event.to_json writes ``id`` then
# ``source`` first, so an anchored match finds it without decoding the payload; any other
# layout is decoded properly (never a guess from inside the raw payload).
SUMMARIES = """
local out = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'state', 'reason', 'updated', 'event')
  local source = ''
  if f[4] then
    source = string.match(f[4], '^{"id":"[^"]*","source":"([%w_-]+)"')
    if not source then
      local ok, event = pcall(cjson.decode, f[4])
      source = (ok and type(event) == 'table' and type(event.source) == 'string')
        and event.source or ''
    end
  end
  out[#out + 1] = f[1] or ''
  out[#out + 1] = string.sub(f[2] or '', 1, 60)
  out[#out + 1] = f[3] or ''
  out[#out + 1] = source
end
return out
"""


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended in a time-ordered index (``events`` or ``dlq``): the score (epoch ms)
    and id of the last entry read. The next page starts right after it, so entries that arrive
    or leave meanwhile neither repeat nor hide older ones. Text form: ``<ms>:<event id>``."""

    score: int
    member: str

    def __str__(self) -> str:
        return f"{self.score}:{self.member}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The cursor :meth:`__str__` wrote; ValueError for anything else."""
        score, sep, member = text.partition(":")
        if not (sep and score.isascii() and score.isdigit() and len(score) <= 15):
            raise ValueError("not a cursor")
        if not member or len(member) > 512:
            raise ValueError("not a cursor")
        return cls(int(score), member)


class Page(NamedTuple):
    """Rows of one page, newest first, and the cursor of the next (None: nothing older)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


class ReadModel:
    """Read-only queries over Redis for one deployment (one prefix)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.queue = EventQueue(redis, settings)
        self.queue_key = self.queue.keys.queue
        self.log = EventLog(redis, settings)
        self._summaries = redis.register_script(SUMMARIES)

    # -- queue ---------------------------------------------------------------------------

    async def queue_counts(self, now: float | None = None) -> dict[str, int]:
        """queued (due now), deferred (scheduled later) and running jobs of our queue.

        ``oldest_due_seconds``: how long the oldest job that is due and not running has been
        due (0 when none is): the queue's lag, which grows when workers are missing or cannot
        keep up (a deep queue that drains is fine; one whose head only ages is not).
        """
        now_ms = int((now if now is not None else time.time()) * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(self.queue_key, "-inf", now_ms)
            pipe.zcount(self.queue_key, f"({now_ms}", "+inf")
            pipe.zrangebyscore(
                self.queue_key, "-inf", now_ms, start=0, num=RUNNING_SCAN_LIMIT, withscores=True
            )
            due, later, head = await pipe.execute()
        running = 0
        oldest_due = 0
        if head:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id, _ in head:
                    pipe.exists(f"arq:in-progress:{_text(job_id)}")
                busy = [bool(int(x)) for x in await pipe.execute()]
            running = sum(busy)
            waiting = next((score for (_, score), b in zip(head, busy, strict=True) if not b), None)
            if waiting is not None:
                oldest_due = max(0, (now_ms - int(waiting)) // 1000)
        return {
            "queued": int(due) - running,
            "running": running,
            "deferred": int(later),
            "oldest_due_seconds": oldest_due,
        }

    async def health_check(self) -> str | None:
        """The line arq's workers write every few seconds (``{prefix}queue:health-check``)."""
        raw = await self.redis.get(f"{self.queue_key}:health-check")
        return _text(raw) if raw is not None else None

    async def per_minute(self, minutes: int, now: float) -> dict[str, list[int]]:
        """Events received and dead-lettered per minute, oldest first, from the pipeline's
        time-ordered indexes (``EventLog.keys.events`` by arrival, ``.dlq`` by death)."""
        last = int(now // 60)
        firsts = [(last - minutes + 1 + i) * 60_000 for i in range(minutes)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for index in (self.log.keys.events, self.log.keys.dlq):
                for start in firsts:
                    pipe.zcount(index, start, f"({start + 60_000}")
            counts = [int(c) for c in await pipe.execute()]
        return {"received": counts[:minutes], "dead": counts[minutes:]}

    async def recent_states(self, now: float, minutes: int = 60) -> dict[str, Any]:
        """States of the events received in the last ``minutes`` (newest :data:`STATE_SAMPLE`),
        and per minute how many finished done, from the pipeline's records."""
        since_ms = int((now - minutes * 60) * 1000)
        ids = await self.redis.zrevrangebyscore(
            self.log.keys.events, "+inf", since_ms, start=0, num=STATE_SAMPLE
        )
        flat = (
            await self._summaries(keys=[self.log.keys.event(_text(i)) for i in ids]) if ids else []
        )
        rows = [flat[n : n + 4] for n in range(0, len(flat), 4)]
        states: dict[str, int] = {}
        deferred: dict[str, int] = {}
        first_minute = int(now // 60) - minutes + 1
        done_series = [0] * minutes
        sources: dict[str, int] = {}
        for state_raw, reason_raw, updated_raw, source_raw in rows:
            source = _text(source_raw) or "unknown"
            sources[source] = sources.get(source, 0) + 1
            state = _text(state_raw) or "unknown"
            states[state] = states.get(state, 0) + 1
            if state == "deferred":
                reason = _text(reason_raw).split(":")[0][:40] or "unspecified"
                deferred[reason] = deferred.get(reason, 0) + 1
            if state == "done" and updated_raw:
                slot = int(int(_text(updated_raw)) // 60_000) - first_minute
                if 0 <= slot < minutes:
                    done_series[slot] += 1
        return {
            "states": states,
            "sources": sources,
            "deferred": deferred,
            "done_series": done_series,
            "sampled": len(ids),
            "capped": len(ids) >= STATE_SAMPLE,
        }

    async def budget_minutes(self, hour_start: float) -> dict[int, int]:
        """Points spent per minute of the hour starting at ``hour_start`` (charged, and spend
        by others learned from Confluence's headers in the minute it was learned).

        read-only view of the budget's ``{prefix}budget:h:<hour ms>`` hash (fields ``m:<n>``);
        :meth:`RedisBudget.snapshot` sums them but does not return the series.
        """
        key = f"{self.prefix}budget:h:{int(hour_start * 1000)}"
        raw = await self.redis.hgetall(key)  # type: ignore[misc]
        out: dict[int, int] = {}
        for name, value in raw.items():
            text = _text(name)
            if text.startswith("m:") and text[2:].lstrip("-").isdigit():
                out[int(text[2:])] = int(value)
        return out

    async def reaction_counts(self) -> dict[str, dict[str, int]]:
        """``{reaction: {outcome: n}}``.

        read-only view of ``{prefix}reactions:counts`` written by workers/effects.py
        (EffectLedger.counts); app/ may not import workers/.
        """
        raw = await self.redis.hgetall(f"{self.prefix}reactions:counts")  # type: ignore[misc]
        out: dict[str, dict[str, int]] = {}
        for name, value in raw.items():
            reaction, _, outcome = _text(name).rpartition(":")
            out.setdefault(reaction or "?", {})[outcome] = int(value)
        return out

    async def dry_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: what dry-run reactions would have done.

        read-only view of ``{prefix}reactions:dryrun`` (EffectLedger.dry_runs, workers/).
        """
        key = f"{self.prefix}reactions:dryrun"
        rows = await self.redis.lrange(key, 0, limit - 1)  # type: ignore[misc]
        out = []
        for raw in rows:
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(mask_secrets(item))
        return out

    # -- jobs (through the pipeline's EventLog) -----------------------------------------

    async def job(self, event_id: str) -> dict[str, Any] | None:
        """A job's detail: record, normalised event, masked raw payload, every attempt."""
        record = await self.log.record(event_id)
        if record is None:
            return None
        event = _event_from(record)
        attempts = await self.log.attempts(event_id)
        event_fields = {} if event is None else _event_dict(event)
        raw = event_fields.pop("raw", {})
        return _row(record, event) | {
            "event": mask_secrets(event_fields),
            "raw": mask_secrets(raw),
            "attempt_list": [dataclasses.asdict(a) for a in attempts],
            "calls": await read_calls(self.redis, self.prefix, event_id),
        }

    async def search_jobs(
        self,
        *,
        event_id: str = "",
        content_id: str = "",
        tenant: str = "",
        type_: str = "",
        status: str = "",
        limit: int = DEFAULT_PAGE,
        cursor: Cursor | None = None,
    ) -> Page:
        """One page of the event records matching every given filter, newest arrival first.

        A page reads at most ``limit`` x :data:`SCAN_PER_ROW` entries of the ``events`` index
        (x :data:`SCAN_PER_ROW_SPARSE` with a tenant or content filter; at most
        :data:`MAX_SCAN`), so a filtered page may hold fewer than ``limit`` rows, or none, while
        ``next_cursor`` says there is more to look through. The filters are applied to the
        records' small fields; only the rows shown are read whole.
        """
        tenant, content_id = tenant.strip().lower(), content_id.strip()

        def wanted(record: EventRecord) -> bool:
            if status and record.state != status:
                return False
            if type_ and record.type != type_:
                return False
            if tenant and tenant not in record.tenant.lower():
                return False
            # The content key ends with the content id; a record without one is decided whole.
            return not (content_id and record.content and not _same_content(record, content_id))

        def row(record: EventRecord) -> dict[str, Any] | None:
            if not wanted(record):
                return None
            shown = _row(record, _event_from(record))
            return None if content_id and shown["content_id"] != content_id else shown

        if event_id:
            record = await self.log.record(event_id.strip())
            found = row(record) if record is not None else None
            return Page([found] if found is not None else [], None)
        per_row = SCAN_PER_ROW_SPARSE if (content_id or tenant) else SCAN_PER_ROW
        keep = Keep(wanted, row, payload=True)
        return await self._scan(self.log.keys.events, cursor, limit, per_row, keep)

    async def dead_page(self, limit: int = DEFAULT_PAGE, cursor: Cursor | None = None) -> Page:
        """One page of dead letters, newest death first (the ``dlq`` index)."""

        def dead(record: EventRecord) -> bool:
            return record.state == "dead"

        def row(record: EventRecord) -> dict[str, Any] | None:
            return record.summary() if dead(record) else None

        keep = Keep(dead, row, payload=False)
        return await self._scan(self.log.keys.dlq, cursor, limit, SCAN_PER_ROW, keep)

    async def _scan(
        self, index: str, after: Cursor | None, limit: int, per_row: int, keep: Keep
    ) -> Page:
        """Rows ``keep`` makes of the records of ``index`` after ``after``, newest first."""
        limit = max(1, min(limit, MAX_PAGE))
        budget = min(MAX_SCAN, limit * per_row)
        rows: list[dict[str, Any]] = []
        position = after
        size = max(2 * limit, 100)
        while budget > 0:
            want = min(budget, size, BATCH)
            size *= 2
            start = None if position is None else Entry(position.member, position.score)
            batch = await self.log.entries(index, want + 1, start)
            more = len(batch) > want  # one more was asked for: is there anything after?
            batch = batch[:want]
            budget -= len(batch)
            found = await self._rows(batch, keep, limit - len(rows))
            rows += [shown for _, shown in found]
            if len(rows) >= limit:
                n = found[-1][0]
                last = not more and n == len(batch) - 1
                return Page(rows, None if last else str(Cursor(batch[n].score, batch[n].member)))
            if batch:
                position = Cursor(batch[-1].score, batch[-1].member)
            if not more:
                return Page(rows, None)
        return Page(rows, str(position) if position is not None else None)

    async def _rows(
        self, batch: list[Entry], keep: Keep, need: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``need`` rows of ``batch``'s records, in order, each with its position in
        ``batch``: filtered on small fields, then (``keep.payload``) read whole as needed."""
        at = {e.member: n for n, e in enumerate(batch)}
        candidates = [r for r in await self.log.summaries(list(at)) if keep.wanted(r)]
        found: list[tuple[int, dict[str, Any]]] = []
        while candidates and len(found) < need:
            chunk = candidates[: need - len(found)]
            candidates = candidates[len(chunk) :]
            records = await self.log.records([r.id for r in chunk]) if keep.payload else chunk
            for record in records:
                shown = keep.row(record)
                if shown is not None:
                    found.append((at[record.id], shown))
        return found

    async def failing(self, limit: int = 15) -> list[dict[str, Any]]:
        """The latest dead letters and failing events (retry scheduled), newest change first:
        from the ``dlq`` and ``failing`` indexes, whatever the arrivals since."""
        records = await self._failing_records(limit)
        newest = sorted(records, key=lambda r: r.updated, reverse=True)[:limit]
        return [_row(r, None) for r in newest]

    async def failing_tenants(self, limit: int = FAILING_SAMPLE) -> list[dict[str, Any]]:
        """Tenants with dead or failing events, worst first: counts among the latest ``limit``
        dead letters and the latest ``limit`` failing events, and the latest reason."""
        tenants: dict[str, dict[str, Any]] = {}
        for record in sorted(await self._failing_records(limit), key=lambda r: r.updated):
            row = tenants.setdefault(
                record.tenant, {"tenant": record.tenant, "dead": 0, "failing": 0}
            )
            row["dead" if record.state == "dead" else "failing"] += 1
            row["reason"], row["updated"] = record.reason, record.updated
        return sorted(tenants.values(), key=lambda r: (-r["dead"] - r["failing"], r["tenant"]))

    async def _failing_records(self, limit: int) -> list[EventRecord]:
        """The latest ``limit`` dead letters and ``limit`` failing events (small fields only),
        reading at most twice as many index entries of each."""
        log = self.log
        dead = await log.recent(index=log.keys.dlq, state="dead", limit=limit, scan=2 * limit)
        failed = await log.recent(index=log.failing, state="failed", limit=limit, scan=2 * limit)
        return [*dead, *failed]

    async def by_tenant(self, sample: int = 1000) -> dict[str, dict[str, Any]]:
        """Per tenant over the newest ``sample`` arrivals (their small fields): events,
        failures, last event."""
        stats: dict[str, dict[str, Any]] = {}
        for record in await self.log.recent(limit=sample, scan=sample):
            row = stats.setdefault(record.tenant, {"events": 0, "failed": 0, "last_event": 0})
            row["events"] += 1
            if record.state in ("failed", "dead") or record.attempts > 0:
                row["failed"] += 1
            row["last_event"] = max(row["last_event"], record.received)
        for row in stats.values():
            row["error_rate"] = f"{row['failed'] / row['events']:.0%}" if row["events"] else "—"
        return stats


class Keep(NamedTuple):
    """What a listing keeps: ``wanted`` decides on a record's small fields, ``row`` makes the
    row (None: left out after all) of the record, read whole first if ``payload``."""

    wanted: Callable[[EventRecord], bool]
    row: Callable[[EventRecord], dict[str, Any] | None]
    payload: bool


def _same_content(record: EventRecord, content_id: str) -> bool:
    return record.content.endswith(f":{content_id}")


def _event_from(record: EventRecord) -> Event | None:
    try:
        return Event.from_json(record.event_json)
    except (ValueError, TypeError):
        return None


def _row(record: EventRecord, event: Event | None) -> dict[str, Any]:
    content_id = event.content_id if event else record.content.rpartition(":")[2]
    return record.summary() | {
        "content_id": content_id,
        "source": event.source if event else "",
        "title": event.title if event else None,
    }


def _event_dict(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.to_json())
    return data
