"""The job layer: run one queued event through the dispatcher and record how it ended.

arq runs ``process_event(ctx, event_id)``; everything arq does not give us happens here:
per-content order (only the head of a content's line has a job; finishing it schedules the
next), superseding, our own attempt count (arq's counter also counts deferrals, so its
``max_tries`` is set out of reach), backoff retries through ``arq.Retry``, dead letters, and
recovery of a run whose worker died (the record still says ``running``).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import structlog
from arq.worker import Retry
from redis.exceptions import RedisError

from app.atlassian.events import Event
from app.eventlog import EventLog, now_ms
from app.jobstate import TERMINAL_STATES, Attempt, EventRecord
from app.settings import Settings
from workers.dispatch import Dispatch, JobContext, LatestOnly, bound_logger, log_only
from workers.retry import Decision, decide

REDIS_RETRY_SECONDS = 1.0
LOST_WORKER = "WorkerLost: the worker running this event stopped before it finished"


async def process_event(ctx: dict[str, Any], event_id: str) -> str:
    """Run one event; returns its final state, or raises ``Retry`` to run it again later."""
    try:
        return await _process(ctx, event_id)
    except RedisError as exc:
        # arq would count a plain exception as the job's end and drop it; Redis came and went
        # mid-run, so the record may be half-moved: run again (the record says what is done).
        structlog.get_logger("reactor.job").warning(
            "Redis failed during the run; it runs again", event_id=event_id, error=str(exc)
        )
        raise Retry(defer=REDIS_RETRY_SECONDS) from exc


async def _process(ctx: dict[str, Any], event_id: str) -> str:
    settings: Settings = ctx["settings"]
    log_store: EventLog = ctx.get("eventlog") or EventLog(ctx["redis"], settings)
    record = await log_store.record(event_id)
    if record is None:
        _log_missing(event_id)
        return "missing"
    if record.state in TERMINAL_STATES:
        return record.state
    event = Event.from_json(record.event_json)
    log = bound_logger(event)
    attempts = record.attempts
    if record.state == "running":
        attempts += 1
        lost = Attempt(
            n=attempts,
            started=record.updated,
            duration_ms=max(0, now_ms() - record.updated),
            outcome="interrupted",
            error=LOST_WORKER,
            replay=record.replays,
        )
        await log_store.add_attempt(event_id, lost)
        log.warning("event run again after its worker stopped", attempts=attempts)
        if attempts > len(settings.retry_schedule):
            await log_store.finish(event_id, event.content_key, "dead", LOST_WORKER)
            return "dead"
    latest_only: LatestOnly | None = ctx.get("latest_only")
    if latest_only is not None and await _superseded(log_store, event, latest_only):
        await log_store.finish(event_id, event.content_key, "superseded", "a newer event waits")
        log.info("event superseded")
        return "superseded"
    return await _run(ctx, log_store, record, event, attempts, log)


async def _run(
    ctx: dict[str, Any],
    log_store: EventLog,
    record: EventRecord,
    event: Event,
    attempts: int,
    log: Any,
) -> str:
    settings: Settings = ctx["settings"]
    dispatch: Dispatch = ctx.get("dispatch") or log_only
    job = JobContext(
        event_id=event.id,
        attempt=attempts + 1,
        settings=settings,
        redis=ctx["redis"],
        log=log,
        resources=ctx,
    )
    await log_store.mark(event.id, "running")
    started_ms = now_ms()
    started = time.monotonic()
    try:
        await asyncio.wait_for(dispatch(event, job), settings.job_timeout_seconds)
    except asyncio.CancelledError:
        await asyncio.shield(log_store.mark(event.id, "queued", "worker shut down; runs again"))
        raise
    except Exception as exc:
        rand: Any = ctx.get("random", random.random)
        decision = decide(exc, attempts, settings.retry_schedule, settings.retry_jitter, rand)
        attempt = Attempt(
            n=attempts + 1,
            started=started_ms,
            duration_ms=int((time.monotonic() - started) * 1000),
            outcome=decision.action,
            error=decision.reason,
            replay=record.replays,
        )
        return await _apply(log_store, event, decision, attempt, log)
    await log_store.finish(event.id, event.content_key, "done", "")
    log.info("event done", attempt=attempts + 1)
    return "done"


async def _apply(
    log_store: EventLog, event: Event, decision: Decision, attempt: Attempt, log: Any
) -> str:
    """Record the decision, then end the job or hand it back to arq with a delay."""
    if decision.counts:
        await log_store.add_attempt(event.id, attempt)
    if decision.action == "dead":
        await log_store.finish(event.id, event.content_key, "dead", decision.reason)
        log.error("event dead-lettered", attempts=attempt.n, error=decision.reason)
        return "dead"
    next_run = now_ms() + int(decision.delay * 1000)
    state = "deferred" if decision.action == "defer" else "failed"
    await log_store.mark(event.id, state, decision.reason, next_run=next_run)
    log.warning(
        "event " + ("deferred" if state == "deferred" else "will be retried"),
        delay_s=round(decision.delay, 3),
        reason=decision.reason,
        attempts=attempt.n if decision.counts else attempt.n - 1,
    )
    raise Retry(defer=decision.delay)


async def _superseded(log_store: EventLog, event: Event, latest_only: LatestOnly) -> bool:
    later = await log_store.pending_after(event)
    if not later:
        return False
    return any(latest_only(event, record.type) for record in await log_store.records(later))


def _log_missing(event_id: str) -> None:
    import structlog

    structlog.get_logger("reactor.job").warning("event record missing", event_id=event_id)
