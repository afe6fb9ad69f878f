"""The worker process: arq ``Worker`` wiring for our settings."""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from collections.abc import Callable
from typing import Any

import structlog
from arq.connections import RedisSettings
from arq.cron import CronJob, cron
from arq.worker import func
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from app import redis as redis_conn
from app.dashboard import heartbeat
from app.errors import ConfigError
from app.eventlog import EventLog
from app.logs import configure_logging
from app.metrics import Metrics
from app.metrics import serve as serve_metrics
from app.queue import job_deserializer, job_serializer
from app.settings import Settings
from workers import clients as reaction_clients
from workers import jobs, loading, purge, reconcile_runtime
from workers.claims import ClaimingWorker
from workers.dispatch import Dispatch, latest_only_from, log_only

HEALTH_CHECK_INTERVAL = 10
EVENT_MAX_TRIES = 1_000_000
# A claimed job is locked this long past the job timeout; a killed worker's jobs run again after.
CLAIM_MARGIN_SECONDS = 5
RECONCILE_TIMEOUT = 600


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_prefix}queue"


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["eventlog"] = EventLog(ctx["redis"], settings)
    if "latest_only" not in ctx:
        ctx["latest_only"] = latest_only_from(settings)
    if "metrics" not in ctx:  # a worker of its own; run_worker passes the process's, served
        ctx["metrics"] = Metrics(role="worker")  # exports only what a worker measures
        if settings.worker_metrics_port:
            ctx["metrics_stop"] = _serve_metrics(ctx["metrics"], settings.worker_metrics_port)
    await reaction_clients.start(ctx)  # before the first heartbeat, which lists the reactions
    await heartbeat.start(ctx)


def _serve_metrics(metrics: Metrics, port: int) -> Callable[[], None]:
    """Serve ``metrics`` on ``port``; a port that cannot be had ends the worker (exit 2)."""
    try:
        return serve_metrics(metrics, port)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(
            f"REACTOR_WORKER_METRICS_PORT: cannot serve metrics on port {port}: {reason}"
        ) from None


async def shutdown(ctx: dict[str, Any]) -> None:
    await reaction_clients.stop(ctx)
    await heartbeat.stop(ctx)
    if "metrics_stop" in ctx:
        ctx.pop("metrics_stop")()


def build_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    burst: bool = False,
    handle_signals: bool = True,
    dispatch: Dispatch | None = None,
    metrics: Metrics | None = None,
) -> ClaimingWorker:
    """An arq worker bound to our queue, with a short health-check interval for ``--check``.

    Without ``metrics`` the worker builds its own at start, and serves them on
    ``REACTOR_WORKER_METRICS_PORT`` until it shuts down; with them, the caller serves them.
    """
    if settings.redis_url is None:
        raise ConfigError("REACTOR_REDIS_URL: required to run a worker")
    # Reactions load here, so a broken module or rules file stops start-up with its message.
    reactions = loading.load_reactions(settings) if dispatch is None else None
    worker = ClaimingWorker(
        functions=[
            func(jobs.ping, name="ping"),
            # Our own attempt count lives in the event record (deferrals must not count), so
            # arq's is out of reach; its timeout is a backstop behind the job layer's own.
            func(
                jobs.process_event,
                name="process_event",
                max_tries=EVENT_MAX_TRIES,
                timeout=settings.job_timeout_seconds + 2,
                keep_result=0,  # the event record keeps how it ended; no arq result to write
            ),
        ],
        queue_name=queue_name(settings),
        redis_settings=_redis_settings(settings.redis_url),
        max_jobs=concurrency or settings.worker_concurrency,
        job_timeout=settings.job_timeout_seconds + 2,
        poll_delay=settings.worker_poll_seconds,
        burst=burst,
        handle_signals=handle_signals,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        job_completion_wait=settings.shutdown_grace_seconds,
        keep_result=60,
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"settings": settings, "dispatch": dispatch or log_only, "reactions": reactions},
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        event_prefix=settings.redis_prefix,
        cron_jobs=cron_jobs(settings, burst),
    )
    # arq locks a claimed job for its longest timeout + 10 s; ours is bounded by the job layer.
    worker.in_progress_timeout_s = settings.job_timeout_seconds + CLAIM_MARGIN_SECONDS
    worker.ctx["worker"] = worker  # the heartbeat reports its running jobs and counters
    if metrics is not None:
        worker.ctx["metrics"] = metrics
    return worker


def _redis_settings(url: str) -> RedisSettings:
    """arq's connection, without arq's own retries at start: :func:`run_worker` retries,
    with backoff, and knows which errors no retry mends."""
    redis_settings = redis_conn.arq_settings(url)
    redis_settings.conn_retries = 0
    return redis_settings


def cron_jobs(settings: Settings, burst: bool = False) -> list[CronJob] | None:
    """Sweeps for undelivered webhooks, checked every minute (unless sweeps are off), and the
    daily purge: index entries past retention, and sites uninstalled longer than the
    retention (unless kept for ever); none in
    burst runs (tests). A cron's name carries the Redis prefix: arq keys a cron run's job by
    name and minute outside any prefix, so deployments sharing one Redis would otherwise take
    each other's runs."""
    if burst:
        return None
    crons = []
    if settings.reconcile_interval_seconds > 0:
        name = f"{settings.redis_prefix}reconcile"
        crons.append(cron(reconcile_runtime.tick, name=name, second=7, timeout=RECONCILE_TIMEOUT))
    name = f"{settings.redis_prefix}purge"  # index trims, then uninstalled sites (if not kept)
    crons.append(cron(purge.purge, name=name, hour=3, minute=17, second=37, timeout=600))
    return crons or None


def run_worker(settings: Settings, concurrency: int | None = None) -> None:
    """Run a worker until it is stopped; when Redis goes away, start a fresh one and go on.

    Each run gets a new event loop (uvloop's where installed: about 8 % less CPU per job
    than asyncio's in bench/e2e.py).

    arq's worker exits when its Redis connection breaks (a restart, a failover). Each run gets
    a new event loop, so nothing of the broken run lingers; the broken run's claimed jobs run
    again once their claims expire.

    The metrics and their server belong to the process, not to a run: a broken run never
    reaches arq's shutdown hooks, so a server started per run would hold the port against the
    next one; and counters kept across runs do not fall back to zero at each reconnect.

    Errors a fresh start cannot mend end the process with a :class:`ConfigError` (one line,
    exit 2): a metrics port in use, credentials or permissions Redis refuses, a database
    number the server lacks, a TLS certificate it cannot trust.
    """
    configure_logging(settings.log_level, settings.log_format)  # before the first connection
    log = structlog.get_logger("reactor.worker")
    metrics = Metrics(role="worker")  # exports only what a worker measures
    stop_metrics: Callable[[], None] | None = None
    if settings.worker_metrics_port:
        stop_metrics = _serve_metrics(metrics, settings.worker_metrics_port)
    stop = StopSignals()
    delay = 1.0
    try:
        while True:
            error = _run_once(settings, concurrency, stop, metrics)
            if error is None or stop.requested:
                return
            log.warning("lost Redis; starting the worker again", error=error, delay_s=delay)
            if stop.wait(delay):
                log.info("stopped while waiting for Redis")
                return
            delay = min(delay * 2, 10.0)
    finally:
        stop.restore()
        if stop_metrics is not None:
            stop_metrics()


def _run_once(
    settings: Settings, concurrency: int | None, stop: StopSignals, metrics: Metrics
) -> str | None:
    """One arq worker on a fresh loop: None once it stopped, else why Redis ended it."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    worker: ClaimingWorker | None = None
    try:
        # arq's handlers from here
        worker = build_worker(settings, concurrency=concurrency, metrics=metrics)
        if not stop.requested:
            worker.run()
        return None
    except (RedisError, OSError) as exc:
        final = final_redis_error(exc, settings.redis_url or "")
        if final is not None:
            raise ConfigError(final) from None
        if worker is not None and worker.stop_requested:
            stop.received.append(signal.SIGTERM)  # asked to stop while Redis was away
        return str(exc)
    finally:
        _close_loop(loop)
        stop.listen()  # the closed loop's handler would swallow SIGTERM and SIGINT


class StopSignals:
    """SIGTERM and SIGINT while no arq worker runs: recorded, never lost.

    A closed uvloop loop leaves its signal handler installed, queueing signals for a loop that
    never runs again; from each loop's close until the next worker installs arq's handlers,
    these take over.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._original = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        self.listen()

    @property
    def requested(self) -> bool:
        return bool(self.received)

    def _record(self, signum: int, _: Any) -> None:
        self.received.append(signum)

    def listen(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._record)

    def restore(self) -> None:
        for sig, handler in self._original.items():
            if handler is not None:
                signal.signal(sig, handler)

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` between two runs; True when a stop signal came meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requested


def final_redis_error(exc: BaseException, url: str) -> str | None:
    """The one line for a Redis error no retry can mend; None for a lost connection.

    redis-py's messages name the host and port, never the password."""
    where = f"REACTOR_REDIS_URL: {redis_conn.display_url(url)}"
    name = type(exc).__name__
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return f"{where}: Redis refused the credentials ({name}: {exc})"
    if isinstance(exc, AuthenticationWrongNumberOfArgsError | NoPermissionError):
        return f"{where}: Redis refused the user ({name}: {exc})"
    if isinstance(exc, ResponseError) and "DB index" in str(exc):
        return f"{where}: no such database on this server ({name}: {exc})"
    if _caused_by(exc, ssl.SSLCertVerificationError):
        return (
            f"{where}: the server's TLS certificate is not trusted ({name}: {exc}); "
            "name its CA with ?ssl_ca_certs=/path/ca.pem"
        )
    return None


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # a chain, never a cycle worth following further
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (as the web process runs under uvicorn), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we ship
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()
