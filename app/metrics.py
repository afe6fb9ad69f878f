"""Prometheus metrics of every process, defined once with stable names.

Each process builds one :class:`Metrics` in its entry file (the web app keeps it on
``app.state.metrics`` and serves it at ``/metrics``; the worker keeps it in ``ctx["metrics"]``
and serves it on ``REACTOR_WORKER_METRICS_PORT`` when set) and passes it down. Every instance
owns its own :class:`~prometheus_client.CollectorRegistry` unless one is injected, so tests
can build as many as they like without "duplicated timeseries" errors.

A process exports only what it measures (``role``). The web process (``"web"``) exports every
name below: it counts deliveries and fills the gauges kept in Redis at each scrape. A worker
(``"worker"``) exports its own counts: the ``reactor_job_*``, ``reactor_dead_lettered_total``
and ``reactor_confluence_*`` series. The ingest counters and the scrape-time gauges (queue,
dead letters, ``reactor_redis_up``, ``reactor_budget_*``) exist on a worker's instance too, so
code may touch them, but are never exported there: nothing in a worker sets them, and a
worker exporting ``reactor_redis_up 0`` or a budget quota of 0 would fire every alert.

Names and labels (keep them stable: dashboards and alerts depend on them)::

    reactor_events_received_total{source}            every delivery that reached ingest
    reactor_events_accepted_total{source}            stored and enqueued (duplicates included)
    reactor_events_rejected_total{source,reason}     refused (reason = error code, e.g. bad_jwt)
    reactor_queue_depth{state}                       queued | deferred | running (set at scrape)
    reactor_queue_oldest_due_seconds{}               how long the oldest due job not running has
                                                     been due (the queue's lag; set at scrape)
    reactor_dead_letters{}                           dead letters currently held (set at scrape)
    reactor_redis_up{}                               1 when the scrape read Redis, else 0 (the
                                                     gauges set at scrape keep their last values)
    reactor_job_duration_seconds{outcome}            histogram: done | retry | deferred | dead
    reactor_job_attempts_total{outcome}              one per attempt, same outcomes
    reactor_dead_lettered_total{reason}              events moved to the dead-letter store
    reactor_budget_*                                 the budget's gauges (app.budget.metrics:
                                                     spent_points, remaining_points, paused,
                                                     429_responses, tenant_spent_points, ...)
    reactor_confluence_calls_total{operation,status} calls to Confluence (status = HTTP code)
    reactor_confluence_call_seconds{operation}       histogram of call latency
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.budget.metrics import BudgetMetrics

JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CALL_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
Role = Literal["web", "worker"]


class Metrics:
    """The metric objects of one process; those its ``role`` measures are in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None, role: Role = "web") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.role = role
        # Called before each render: counts kept outside the registry are folded into it.
        self.before_render: list[Callable[[], None]] = []
        r = self.registry
        # The web process's series: on a worker, registered where no scrape reads them.
        w = r if role == "web" else CollectorRegistry()
        self.events_received = Counter(
            "reactor_events_received",
            "Deliveries that reached ingest, by source (connect, forge, ...).",
            ["source"],
            registry=w,
        )
        self.events_accepted = Counter(
            "reactor_events_accepted",
            "Deliveries stored and enqueued (duplicates included), by source.",
            ["source"],
            registry=w,
        )
        self.events_rejected = Counter(
            "reactor_events_rejected",
            "Deliveries refused, by source and reason (the error code).",
            ["source", "reason"],
            registry=w,
        )
        self.queue_depth = Gauge(
            "reactor_queue_depth",
            "Jobs in the queue by state (queued, deferred, running), read at scrape time.",
            ["state"],
            registry=w,
        )
        self.queue_oldest_due = Gauge(
            "reactor_queue_oldest_due_seconds",
            "Seconds the oldest job that is due and not running has been due (0 if none), "
            "read at scrape time.",
            registry=w,
        )
        self.dead_letters = Gauge(
            "reactor_dead_letters",
            "Dead letters currently held, read at scrape time.",
            registry=w,
        )
        self.redis_up = Gauge(
            "reactor_redis_up",
            "1 when this scrape read the gauges kept in Redis, 0 when Redis did not answer "
            "within REACTOR_REDIS_TIMEOUT_SECONDS (those gauges then hold their last values).",
            registry=w,
        )
        self.job_duration = Histogram(
            "reactor_job_duration_seconds",
            "Wall time of one job attempt, by outcome (done, retry, deferred, dead).",
            ["outcome"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_attempts = Counter(
            "reactor_job_attempts",
            "Job attempts by outcome (done, retry, deferred, dead).",
            ["outcome"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "reactor_dead_lettered",
            "Events moved to the dead-letter store, by reason.",
            ["reason"],
            registry=r,
        )
        self.budget = BudgetMetrics(w)
        self.confluence_calls = Counter(
            "reactor_confluence_calls",
            "Calls to the Confluence REST API by operation and HTTP status.",
            ["operation", "status"],
            registry=r,
        )
        self.confluence_call_seconds = Histogram(
            "reactor_confluence_call_seconds",
            "Latency of calls to the Confluence REST API, by operation.",
            ["operation"],
            buckets=CALL_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        for hook in self.before_render:
            hook()
        return generate_latest(self.registry)


class Activity:
    """Per-minute counters in Redis, shared by every process: what the dashboard charts.

    Prometheus counters live per process; the dashboard needs totals across all web and worker
    processes, per minute, for the last hour. Key ``{prefix}activity:<epoch minute>`` is a hash
    of counter name -> value, kept :data:`ACTIVITY_KEEP_SECONDS`. Names in use::

        received:<source>   accepted:<source>   rejected:<source>:<reason>   duplicate:<source>
        done   retry   failed   dead   deferred:<reason>   depth:<state> (sampled)
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, minute: int) -> str:
        return f"{self.prefix}activity:{minute}"

    async def count(self, name: str, amount: int = 1, now: float | None = None) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self.add_counts(pipe, [name], amount, now)
            await pipe.execute()

    def add_counts(
        self, pipe: Pipeline, names: list[str], amount: int = 1, now: float | None = None
    ) -> None:
        """Add ``amount`` to each of ``names`` in this minute, as commands on ``pipe``."""
        if not names:
            return
        key = self.key(_minute(now))
        for name in names:
            pipe.hincrby(key, name, amount)
        pipe.expire(key, ACTIVITY_KEEP_SECONDS)

    async def sample(self, values: dict[str, int], now: float | None = None) -> None:
        """Record point-in-time values (queue depth) for this minute; the last write wins."""
        if not values:
            return
        key = self.key(_minute(now))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={k: str(v) for k, v in values.items()})
            pipe.expire(key, ACTIVITY_KEEP_SECONDS)
            await pipe.execute()

    async def minutes(self, count: int = 60, now: float | None = None) -> list[Minute]:
        """The last ``count`` minutes, oldest first, each ``(epoch minute, {name: value})``."""
        last = _minute(now)
        first_minute = last - count + 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for minute in range(first_minute, last + 1):
                pipe.hgetall(self.key(minute))
            rows = await pipe.execute()
        out: list[Minute] = []
        for minute, row in zip(range(first_minute, last + 1), rows, strict=True):
            out.append((minute, {_s(k): int(v) for k, v in row.items()}))
        return out


Minute = tuple[int, dict[str, int]]
ACTIVITY_KEEP_SECONDS = 2 * 3600


def _minute(now: float | None) -> int:
    return int((now if now is not None else time.time()) // 60)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def serve(metrics: Metrics, port: int, host: str = "0.0.0.0") -> Callable[[], None]:  # noqa: S104
    """Serve ``metrics`` on ``host:port`` from a thread (worker processes); returns a stopper."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
