"""The job layer: run one queued event through the dispatcher and record how it ended.

arq runs ``process_event(ctx, event_id)``; everything arq does not give us happens here:
per-content order (only the head of a content's line has a job; finishing it schedules the
next), superseding, our own attempt count (arq's counter also counts deferrals, so its
``max_tries`` is set out of reach), backoff retries through ``arq.Retry``, dead letters, and
recovery of a run whose worker died (the record still says ``running``). How each run ended
is counted (:mod:`workers.observe`) and its Confluence calls are kept for the job's detail page
(:class:`app.dashboard.calls.CallRecorder`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import structlog
from arq.worker import Retry
from redis.exceptions import RedisError

from app.atlassian.events import REMOVALS, Event
from app.confluence.errors import NotFound
from app.dashboard.calls import CallRecorder
from app.errors import Defer
from app.eventlog import EXPIRED, EventLog, Writes, now_ms
from app.jobstate import JOB_EXPIRY_MS, TERMINAL_STATES, Attempt, EventRecord
from app.settings import Settings
from workers.claims import ClaimingWorker
from workers.dispatch import Dispatch, JobContext, LatestOnly, bound_logger, log_only
from workers.observe import JobObserver
from workers.retry import Decision, decide

REDIS_RETRY_SECONDS = 1.0
# After arq's backstop cut a run off: what was cancelled gets a job timeout and this long to
# unwind before the event runs again (two runs of one event must not overlap).
UNWIND_SECONDS = 5.0
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
    except asyncio.CancelledError as exc:
        # Cancelled from outside the job layer: arq's timeout backstop (a run whose own Redis
        # calls stalled, a reaction slow to unwind, an event loop held up past every bound) or
        # a worker shutting down. arq ends a job that its timeout cancelled for good, deleting
        # it, while the record still heads its content's line: every later event of the page
        # would wait forever. As a Retry the job stays queued and runs again (the record says
        # what is done). After the backstop, not before a job timeout has passed: what was
        # cancelled may still be unwinding, and two runs of one event must not overlap.
        stopping = _stopping(ctx)
        structlog.get_logger("reactor.job").warning(
            "run cancelled before it ended; it runs again", event_id=event_id, shutdown=stopping
        )
        settings: Settings = ctx["settings"]
        delay = REDIS_RETRY_SECONDS if stopping else settings.job_timeout_seconds + UNWIND_SECONDS
        raise Retry(defer=delay) from exc


def _stopping(ctx: dict[str, Any]) -> bool:
    """Whether the worker running this job is shutting down (SIGTERM, SIGINT)."""
    worker = ctx.get("worker")
    if not isinstance(worker, ClaimingWorker):
        return True  # no way to tell: as before, a cancelled run is a shutdown's
    return worker.stop_requested or not worker.allow_pick_jobs


async def _process(ctx: dict[str, Any], event_id: str) -> str:
    settings: Settings = ctx["settings"]
    log_store: EventLog = ctx.get("eventlog") or EventLog(ctx["redis"], settings)
    latest_only: LatestOnly | None = ctx.get("latest_only")
    # The record as it was, now marked running, and who waits behind it: started when the
    # worker claimed the job (same round trip), else here in one.
    worker = ctx.get("worker")
    begun = worker.take_begun(event_id) if isinstance(worker, ClaimingWorker) else None
    if begun is None:
        begun = await log_store.begin(event_id, later=latest_only is not None)
    record, later_types = begun
    if record is None or not record.content:
        # Expired (or only the state a scheduler wrote over an expired record): nothing to run,
        # and no content key to release its line by; see docs/pipeline.md, "Retention".
        _log_missing(event_id)
        return "missing"
    if not record.type:
        # A stub for an expired event, scheduled when more expired ones were in line than one
        # step skips: ended like them, and the line goes on.
        _log_missing(event_id)
        await log_store.finish(event_id, record.content, "discarded", EXPIRED)
        return "discarded"
    if record.state in TERMINAL_STATES:
        return record.state
    event = Event.from_json(record.event_json)
    log = bound_logger(event)
    observer = JobObserver.from_ctx(ctx)
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
            ended = observer.ended_writes("dead", None, LOST_WORKER)
            await _finish(log_store, event, "dead", LOST_WORKER, log, [ended])
            return "dead"
        await observer.interrupted()
    if latest_only is not None and any(latest_only(event, t) for t in set(later_types) if t):
        await _finish(log_store, event, "superseded", "a newer event waits", log)
        log.info("event superseded")
        return "superseded"
    return await _run(ctx, log_store, record, event, attempts, log, observer)


async def _run(
    ctx: dict[str, Any],
    log_store: EventLog,
    record: EventRecord,
    event: Event,
    attempts: int,
    log: Any,
    observer: JobObserver,
) -> str:
    settings: Settings = ctx["settings"]
    dispatch: Dispatch = ctx.get("dispatch") or log_only
    recorder = CallRecorder(log, ctx.get("metrics"))
    job = JobContext(
        event_id=event.id,
        attempt=attempts + 1,
        settings=settings,
        redis=ctx["redis"],
        log=log,
        resources=ctx,
        client_log=recorder,
        after=[],
    )
    started_ms = now_ms()
    started = time.monotonic()
    try:
        try:
            await asyncio.wait_for(dispatch(event, job), settings.job_timeout_seconds)
        except asyncio.CancelledError:
            if _stopping(ctx):  # a shutdown: the run runs again, and is not an attempt
                mark = log_store.mark(event.id, "queued", "worker shut down; runs again")
                await asyncio.shield(mark)
            # else arq's timeout backstop: the record stays ``running``, so the next run counts
            # this one as an interrupted attempt (retries and dead letters still apply)
            raise
        except Exception as exc:
            rand: Any = ctx.get("random", random.random)
            decision = decide(exc, attempts, settings.retry_schedule, settings.retry_jitter, rand)
            if _waited_too_long(exc, record, started_ms):
                decision = Decision("dead", 0.0, decision.reason + " (waited too long)", True)
            if isinstance(exc, NotFound) and decision.action == "dead":
                removal = await _removal_behind(log_store, event)
                if removal is not None:
                    # The content was trashed or deleted after this change: nothing to react
                    # to, and nothing an operator could replay. The removal event runs next.
                    reason = f"{decision.reason} (a {removal} event of the content waits)"
                    seconds = time.monotonic() - started
                    ended = observer.ended_writes("done", seconds)
                    await _finish(log_store, event, "superseded", reason, log, [ended])
                    log.info("event superseded: its content was removed", removal=removal)
                    return "superseded"
            attempt = Attempt(
                n=attempts + 1,
                started=started_ms,
                duration_ms=int((time.monotonic() - started) * 1000),
                outcome=decision.action,
                error=decision.reason,
                replay=record.replays,
            )
            return await _apply(log_store, event, decision, attempt, log, observer)
        # The end of the run, what the reactions recorded, its call log and the shared
        # counters: one round trip.
        assert job.after is not None
        also = [
            *job.after,
            recorder.writes(settings.redis_prefix, event.id, settings.event_retention_seconds),
            observer.ended_writes("done", time.monotonic() - started),
        ]
        job.after.clear()
        await _finish(log_store, event, "done", "", log, also)
        log.info("event done", attempt=attempts + 1)
        return "done"
    finally:
        keep = max(settings.event_retention_seconds, settings.dead_letter_retention_seconds)
        pending = [*(job.after or []), recorder.writes(settings.redis_prefix, event.id, keep)]
        await _flush(ctx["redis"], pending, log)


def _waited_too_long(exc: BaseException, record: EventRecord, now: int) -> bool:
    """A :class:`~app.errors.Defer` whose event has waited past its ``give_up_after``, since
    it came or since an operator last replayed it."""
    since = max(record.received, record.replayed_at)
    if not isinstance(exc, Defer) or exc.give_up_after is None or not since:
        return False
    return now - since > exc.give_up_after * 1000


async def _flush(redis: Any, writes: list[Writes], log: Any) -> None:
    """Send what a run that did not end in one round trip still has to record (the effects
    its reactions applied, its Confluence calls); a failure is logged, not the job's end."""
    try:
        await asyncio.shield(_send(redis, writes))
    except (RedisError, OSError) as exc:
        log.warning("run records not saved", error=str(exc))


async def _send(redis: Any, writes: list[Writes]) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for add in writes:
            add(pipe)
        if len(pipe):
            await pipe.execute()


async def _apply(
    log_store: EventLog,
    event: Event,
    decision: Decision,
    attempt: Attempt,
    log: Any,
    observer: JobObserver,
) -> str:
    """Record the decision, count it, then end the job or hand it back to arq with a delay."""
    seconds = attempt.duration_ms / 1000
    if decision.counts:
        await log_store.add_attempt(event.id, attempt)
    if decision.action == "dead":
        ended = observer.ended_writes("dead", seconds, decision.reason)
        await _finish(log_store, event, "dead", decision.reason, log, [ended])
        log.error("event dead-lettered", attempts=attempt.n, error=decision.reason)
        return "dead"
    next_run = now_ms() + int(decision.delay * 1000)
    state = "deferred" if decision.action == "defer" else "failed"
    await log_store.mark(event.id, state, decision.reason, next_run=next_run)
    await _keep_alive(log_store, event)
    await observer.ended("deferred" if state == "deferred" else "retry", seconds, decision.reason)
    log.warning(
        "event " + ("deferred" if state == "deferred" else "will be retried"),
        delay_s=round(decision.delay, 3),
        reason=decision.reason,
        attempts=attempt.n if decision.counts else attempt.n - 1,
    )
    raise Retry(defer=decision.delay)


async def _finish(
    log_store: EventLog,
    event: Event,
    state: str,
    reason: str,
    log: Any,
    also: Sequence[Writes] = (),
) -> None:
    """End ``event`` and start the next of its content (``also``: writes sent along).

    The record of an event waiting behind a long-deferred head can expire before its turn;
    the script ends such events on the way (discarded), so its content's line never blocks.
    """
    finished = await log_store.finish(event.id, event.content_key, state, reason, also)
    for skipped in finished.skipped:
        log.warning("next event of the content has no record; skipped", skipped=skipped)


async def _keep_alive(log_store: EventLog, event: Event) -> None:
    """A head handed back to arq keeps its record and its content's line for the retention."""
    keys, ttl = log_store.keys, log_store.retention
    async with log_store.redis.pipeline(transaction=False) as pipe:
        pipe.expire(keys.event(event.id), ttl)
        pipe.expire(keys.attempts(event.id), ttl)
        pipe.expire(keys.content(event.content_key), ttl)
        # and its arq job, whose own expiry (set when it was scheduled) would otherwise end a
        # head deferred for longer: arq would drop it, and the line would wait forever
        pipe.pexpire(keys.arq_job(event.id), JOB_EXPIRY_MS)
        await pipe.execute()


async def _removal_behind(log_store: EventLog, event: Event) -> str | None:
    """The type of a removal (trash, delete) waiting behind ``event`` in its content's line."""
    for type_ in await log_store.waiting_types(event.id, event.content_key):
        if type_ in REMOVALS:
            return type_
    return None


def _log_missing(event_id: str) -> None:
    import structlog

    structlog.get_logger("reactor.job").warning("event record missing", event_id=event_id)
