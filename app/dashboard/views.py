"""What each page and API endpoint shows, composed from the read model and the owners' APIs.

Every function returns plain JSON-ready dicts, so pages, the ops API, the live stream and the
CLI show the same numbers. A data source that is not available says so (``available: False``
and a ``gap`` sentence) instead of showing made-up values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from app.budget.hook import Priority
from app.budget.redis_budget import RedisBudget
from app.crypto import SecretBox
from app.dashboard.data import DEFAULT_PAGE, QUEUE_STATES, Cursor, Page, ReadModel
from app.dlq import DeadLetters, Filter
from app.installations import InstallationStore
from app.jobstate import Keys
from app.metrics import Activity, Metrics
from app.settings import Settings
from app.tenants import TenantStore

HOUR_MINUTES = 60
REPLAY_OUTCOMES = ("replayed", "not_dead", "closing")
# Ids an audit entry keeps per list (their count is kept too): one action may name thousands.
AUDIT_IDS = 100
# Ids checked for a record per round trip when an action names ids that are not dead letters.
UNKNOWN_CHECK_BATCH = 1000


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def read_model(request: Request) -> ReadModel:
    return ReadModel(request.app.state.redis, _settings(request))


def activity(request: Request) -> Activity:
    return Activity(request.app.state.redis, _settings(request).redis_prefix)


def _sum_prefixed(row: dict[str, int], prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in row.items():
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            out[rest] = out.get(rest, 0) + value
    return out


def summarize_minutes(minutes: list[tuple[int, dict[str, int]]]) -> dict[str, Any]:
    """Totals of the last hour and per-minute series for the charts (pure)."""
    totals: dict[str, int] = {}
    series: dict[str, list[int]] = {
        "received": [], "done": [], "failed": [], "dead": [], "queued": [], "retry": [],
    }  # fmt: skip
    received_by_source: dict[str, int] = {}
    deferred_by_reason: dict[str, int] = {}
    rejected_by_reason: dict[str, int] = {}
    for _, row in minutes:
        received = _sum_prefixed(row, "received:")
        for source, n in received.items():
            received_by_source[source] = received_by_source.get(source, 0) + n
        for reason, n in _sum_prefixed(row, "deferred:").items():
            deferred_by_reason[reason] = deferred_by_reason.get(reason, 0) + n
        for reason, n in _sum_prefixed(row, "rejected:").items():
            rejected_by_reason[reason] = rejected_by_reason.get(reason, 0) + n
        series["received"].append(sum(received.values()))
        for name in ("done", "failed", "dead", "retry"):
            series[name].append(row.get(name, 0))
            totals[name] = totals.get(name, 0) + row.get(name, 0)
        series["queued"].append(row.get("depth:queued", 0))
    return {
        "received": received_by_source,
        "received_total": sum(received_by_source.values()),
        "rejected": rejected_by_reason,
        "deferred": deferred_by_reason,
        "done": totals.get("done", 0),
        "failed": totals.get("failed", 0),
        "retry": totals.get("retry", 0),
        "dead": totals.get("dead", 0),
        "series": series,
        "minutes": [m for m, _ in minutes],
    }


@dataclasses.dataclass
class _Shared:
    """The latest overview computation of one kind (with or without a depth sample)."""

    task: asyncio.Task[dict[str, Any]] | None = None
    started: float = 0.0
    loop: asyncio.AbstractEventLoop | None = None


async def overview(
    request: Request, *, sample: bool = False, fresh_for: float = 0.0
) -> dict[str, Any]:
    """The overview (:func:`compute_overview`), one computation shared by concurrent callers:
    one in progress is joined, and one begun less than ``fresh_for`` seconds ago is reused (the
    live streams pass their period, so any number of open tabs costs one per period). Treat the
    answer as read-only: callers share it."""
    shared = _shared(request, sample)
    loop, now = asyncio.get_running_loop(), time.monotonic()
    task = shared.task if shared.loop is loop else None
    if task is None or (task.done() and not _fresh(task, now - shared.started, fresh_for)):
        task = loop.create_task(compute_overview(request, sample=sample))
        shared.task, shared.started, shared.loop = task, now, loop
    # A caller that goes away (a closed tab) does not cancel what the others wait for.
    return await asyncio.shield(task)


def _fresh(task: asyncio.Task[dict[str, Any]], age: float, fresh_for: float) -> bool:
    """Whether a finished computation may be reused: it succeeded, under ``fresh_for`` ago."""
    return not task.cancelled() and task.exception() is None and age < fresh_for


def _shared(request: Request, sample: bool) -> _Shared:
    state = request.app.state
    slots: dict[bool, _Shared] | None = getattr(state, "overview_shared", None)
    if slots is None:
        slots = state.overview_shared = {}
    return slots.setdefault(sample, _Shared())


async def compute_overview(request: Request, *, sample: bool = False) -> dict[str, Any]:
    """Counts now, totals and charts of the last hour, worker health, DLQ and budget summary."""
    model = read_model(request)
    now = time.time()
    counts = await model.queue_counts(now)
    act = activity(request)
    if sample:
        await act.sample({f"depth:{k}": counts[k] for k in QUEUE_STATES}, now)
    hour = summarize_minutes(await act.minutes(HOUR_MINUTES, now))
    indexed = await model.per_minute(HOUR_MINUTES, now)
    for name in ("received", "dead"):
        # The pipeline's indexes are the truth for arrivals and deaths; the activity counters
        # add what no index holds (by source, rejections, done, deferrals).
        hour["series"][name] = [
            max(a, b) for a, b in zip(indexed[name], hour["series"][name], strict=True)
        ]
        hour["received_total" if name == "received" else name] = sum(hour["series"][name])
    recent = await model.recent_states(now, HOUR_MINUTES)
    hour["states"] = recent["states"]
    # Events stored behind an earlier event of their content (not in the job queue yet): from
    # the last hour's records, the ones the state sample covers.
    counts["waiting"] = recent["states"].get("received", 0)
    hour["sampled"], hour["capped"] = recent["sampled"], recent["capped"]
    if not any(hour["series"]["done"]):
        hour["series"]["done"] = recent["done_series"]
        hour["done"] = sum(recent["done_series"])
    if not hour["deferred"]:
        hour["deferred"] = recent["deferred"]
    if not hour["received"]:
        hour["received"] = recent["sources"]
    workers_now = await workers(request)
    return {
        "now": now,
        "queue": counts,
        "hour": hour,
        "workers": {"alive": workers_now["alive"], "health": workers_now["health"]},
        "dead_letters": await dead_letter_count(request),
        "budget": (await budget(request)).get("summary"),
        "failing": await model.failing(),
        "failing_tenants": await model.failing_tenants(),
    }


async def search_jobs(
    request: Request,
    filters: dict[str, str],
    limit: int = DEFAULT_PAGE,
    cursor: Cursor | None = None,
) -> Page:
    """One page of matching jobs, newest first (see :meth:`ReadModel.search_jobs`)."""
    return await read_model(request).search_jobs(
        event_id=filters.get("event_id", ""),
        content_id=filters.get("content_id", ""),
        tenant=filters.get("tenant", ""),
        type_=filters.get("type", ""),
        status=filters.get("status", ""),
        limit=limit,
        cursor=cursor,
    )


async def job_detail(request: Request, event_id: str) -> dict[str, Any] | None:
    return await read_model(request).job(event_id)


async def dead_letter_count(request: Request) -> int | None:
    return await DeadLetters(request.app.state.redis, _settings(request)).count()


async def dead_letters(
    request: Request, limit: int = 200, cursor: Cursor | None = None
) -> dict[str, Any]:
    """One page of dead letters, newest death first, with the total and the next page's cursor."""
    page = await read_model(request).dead_page(limit, cursor)
    return {
        "available": True,
        "gap": "",
        "total": await dead_letter_count(request),
        "items": page.rows,
        "next_cursor": page.next_cursor,
    }


async def dead_letter_action(
    request: Request, action: str, scope: str, ids: list[str], where: Filter | None = None
) -> dict[str, Any]:
    """Retry (replay) or discard dead letters through the dead-letter store.

    ``scope`` "all": every dead letter ``where`` matches (all of them without a filter).
    """
    store = DeadLetters(request.app.state.redis, _settings(request))
    if action not in ("retry", "discard"):
        return {"ok": False, "count": 0, "detail": f"unknown action {action!r}"}
    if scope == "all":
        everything: list[str] = await (
            store.retry_all(where) if action == "retry" else store.discard_all(where)
        )
        return {"ok": True, "count": len(everything), "ids": everything[:100]}
    if action == "discard":
        done = await store.discard_ids(ids)
        discarded = set(done)
        missing, closing = [i for i in ids if i not in discarded], []
    else:
        outcomes = await store.replay_ids(ids)
        done, missing, closing = ([i for i in ids if outcomes[i] == o] for o in REPLAY_OUTCOMES)
    refused = missing + closing
    result: dict[str, Any] = {"ok": bool(done) or not refused, "count": len(done), "ids": done}
    details = []
    unknown = await _unknown(request, missing)
    if unknown:
        gone = set(unknown)
        missing = [i for i in missing if i not in gone]
        result["unknown"] = unknown
        details.append(f"{len(unknown)} id(s) are no event we hold (mistyped, or expired)")
    if missing:
        result["not_dead"] = missing
        details.append(f"{len(missing)} id(s) are not dead letters (already retried?)")
    if closing:
        result["closing"] = closing
        details.append(
            f"{len(closing)} id(s) still have their last run being closed by a worker;"
            " try again in a moment"
        )
    if details:
        result["detail"] = "; ".join(details)
    return result


async def _unknown(request: Request, ids: list[str]) -> list[str]:
    """Those of ``ids`` with no event record at all (an id mistyped, or long expired)."""
    keys = Keys(_settings(request).redis_prefix)
    found: list[int] = []
    for first in range(0, len(ids), UNKNOWN_CHECK_BATCH):
        async with request.app.state.redis.pipeline(transaction=False) as pipe:
            for event_id in ids[first : first + UNKNOWN_CHECK_BATCH]:
                pipe.exists(keys.event(event_id))
            found += await pipe.execute()
    return [event_id for event_id, n in zip(ids, found, strict=True) if not n]


def audit_detail(result: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter action's result for its audit entry: each id list cut to
    :data:`AUDIT_IDS`, with its full length beside it (``ids`` has ``count``)."""
    detail = dict(result)
    for name in ("ids", "not_dead", "unknown", "closing"):
        listed = detail.get(name)
        if isinstance(listed, list):
            detail[name] = listed[:AUDIT_IDS]
            if name != "ids":
                detail[f"{name}_count"] = len(listed)
    return detail


async def budget(request: Request) -> dict[str, Any]:
    """This hour's points: summary, per tenant and priority, burn series, forecast."""
    redis = request.app.state.redis
    snap = await RedisBudget(redis, _settings(request)).snapshot()
    burn = await read_model(request).budget_minutes(snap.hour_start)
    minute_now = int((snap.now - snap.hour_start) // 60)
    cumulative, total = [], 0
    for minute in range(minute_now + 1):
        total += burn.get(minute, 0)
        cumulative.append(total)
    return {
        "available": True,
        "gap": "",
        "summary": {
            "quota": snap.quota,
            "spent": snap.spent,
            "remaining": snap.remaining,
            "reserved": snap.reserved,
            "external": snap.external,
            "n429": snap.n429,
            "near_limit": snap.near_limit,
            "paused_until": snap.paused_until,
            "forecast": snap.forecast,
            "hour_start": snap.hour_start,
        },
        "tenants": [
            {
                "tenant": t,
                "spent": u.spent,
                "reserved": u.reserved,
                "paused_until": snap.tenant_pauses.get(t),
            }
            for t, u in sorted(snap.tenants.items(), key=lambda kv: -kv[1].charged)
        ],
        "priorities": [
            {"priority": _priority_name(p), "spent": u.spent, "reserved": u.reserved}
            for p, u in sorted(snap.priorities.items())
        ],
        "tenant_pauses": dict(snap.tenant_pauses),
        "backlogged": list(snap.backlogged),
        # The x axis is the whole hour: spending so far against the quota line.
        "burn": {"cumulative": cumulative, "quota": [snap.quota] * HOUR_MINUTES},
    }


def _priority_name(value: int) -> str:
    try:
        return Priority(value).name.lower()
    except ValueError:
        return str(value)


async def tenants(request: Request) -> dict[str, Any]:
    """Connect tenants and Forge installations with their recent event and failure counts."""
    settings = _settings(request)
    redis = request.app.state.redis
    stats = await read_model(request).by_tenant()
    empty = {"events": 0, "failed": 0, "last_event": None, "error_rate": "—"}
    # Read without decrypting any secret: a secret sealed with a retired key (an uninstalled
    # site's, say) must not take the listing down.
    connect = [
        row | empty | stats.get(str(row["client_key"]), {})
        for row in await TenantStore(redis, settings).list_public()
    ]
    forge = []
    # Listing reads no sealed token: shown with or without REACTOR_SECRET_KEY.
    store = InstallationStore(
        redis, SecretBox(settings.secret_keys, lazy=True), settings.redis_prefix
    )
    now = time.time()
    for inst in await store.list():
        row = dataclasses.asdict(inst) | empty | stats.get(inst.tenant, {})
        row["site"] = inst.api_base_url
        row["last_event"] = stats.get(inst.tenant, {}).get("last_event") or inst.last_seen
        row["token"] = _token_state(inst.token_expires_at, now)
        forge.append(row)
    return {"available": True, "gap": "", "connect": connect, "forge": forge}


def _token_state(expires_at: int | None, now: float) -> str:
    if not expires_at:
        return "none held"
    seconds = expires_at / (1000 if expires_at > 1e11 else 1)
    return "expired" if seconds <= now else f"valid, expires {clock(seconds)}"


async def reactions(request: Request) -> dict[str, Any]:
    """Loaded reactions (from worker heartbeats), runs per outcome, dry-run records."""
    from app.dashboard.heartbeat import Heartbeats

    settings = _settings(request)
    model = read_model(request)
    counts = await model.reaction_counts()
    beats = await Heartbeats(request.app.state.redis, settings.redis_prefix).alive()
    loaded: dict[str, dict[str, Any]] = {}
    for beat in beats:
        for item in beat.get("reactions", []):
            loaded.setdefault(item["name"], item)
    names = sorted(set(loaded) | set(counts))
    rows = [
        loaded.get(name, {"name": name, "events": [], "filters": {}, "dry_run": None})
        | {"counts": counts.get(name, {}), "loaded": name in loaded}
        for name in names
    ]
    return {
        "available": True,
        "gap": "",
        "workers_reporting": len(beats),
        "modules": settings.reaction_modules,
        "rules_file": str(settings.rules_file) if settings.rules_file else None,
        "dry_run": settings.dry_run,
        "reactions": rows,
        "dry_runs": await model.dry_runs(),
    }


async def workers(request: Request) -> dict[str, Any]:
    from app.dashboard.heartbeat import Heartbeats

    model = read_model(request)
    settings = _settings(request)
    health = await model.health_check()
    beats = await Heartbeats(request.app.state.redis, settings.redis_prefix).alive()
    return {
        "health": health,
        "alive": len(beats) if beats else (1 if health else 0),
        "workers": beats,
    }


def ago(value: float | int | None) -> str:
    """'12s ago' style text for an epoch (seconds or milliseconds)."""
    if value is None:
        return "never"
    seconds = float(value) / (1000 if value > 1e11 else 1)
    delta = max(0, int(time.time() - seconds))
    if delta < 60:
        return f"{delta}s ago"
    if delta < 3600:
        return f"{delta // 60}m ago"
    if delta < 86400:
        return f"{delta // 3600}h ago"
    return f"{delta // 86400}d ago"


def clock(value: float | int | None) -> str:
    """UTC wall-clock time of an epoch (seconds or milliseconds)."""
    if value is None or value == 0:
        return "—"
    seconds = float(value) / (1000 if value > 1e11 else 1)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


async def refresh_gauges(request: Request, metrics: Metrics) -> None:
    """Set the gauges whose truth lives in Redis (queue depth, DLQ size, budget) for a scrape."""
    counts = await read_model(request).queue_counts()
    for state in QUEUE_STATES:
        metrics.queue_depth.labels(state=state).set(counts[state])
    metrics.queue_oldest_due.set(counts["oldest_due_seconds"])
    dead = await dead_letter_count(request)
    if dead is not None:
        metrics.dead_letters.set(dead)
    metrics.budget.update(await RedisBudget(request.app.state.redis, _settings(request)).snapshot())
