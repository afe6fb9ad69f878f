"""What the job layer reports when a run ends: Prometheus metrics and the per-minute counters.

:mod:`workers.pipeline` calls :meth:`JobObserver.ended` once per run, where the outcome is
applied (the same place ``workers.retry.decide`` is acted on)::

    outcome      reactor_job_duration_seconds /     Activity (the dashboard's Overview)
                 reactor_job_attempts_total
    done         {outcome="done"}                   done
    retry        {outcome="retry"}                  failed, retry
    deferred     {outcome="deferred"}               deferred:<reason>
    dead         {outcome="dead"}                   failed, dead
                 + reactor_dead_lettered_total{reason}

``reason`` labels are the error's type (``NotFound``, ``PermanentFailure``, ``WorkerLost``)
or a deferral's reason up to its first colon, so label sets stay small. The counters are
best effort: a Redis error while counting is logged, never the job's outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from app.metrics import Activity, Metrics

Outcome = Literal["done", "retry", "deferred", "dead"]
REASON_LIMIT = 40


def short_reason(reason: str) -> str:
    """A label-sized reason: the text up to its first colon, or ``unspecified``."""
    return reason.split(":", 1)[0].strip()[:REASON_LIMIT] or "unspecified"


def activity_names(outcome: Outcome, reason: str) -> list[str]:
    """The per-minute counters one run ending in ``outcome`` adds to."""
    if outcome == "done":
        return ["done"]
    if outcome == "deferred":
        return [f"deferred:{short_reason(reason)}"]
    return ["failed", outcome]


class JobObserver:
    """Counts job outcomes in the process's :class:`Metrics` and the shared :class:`Activity`."""

    def __init__(self, metrics: Metrics | None, redis: Redis, prefix: str) -> None:
        self.metrics = metrics
        self.activity = Activity(redis, prefix)

    @classmethod
    def from_ctx(cls, ctx: dict[str, Any]) -> JobObserver:
        return cls(ctx.get("metrics"), ctx["redis"], ctx["settings"].redis_prefix)

    async def ended(self, outcome: Outcome, seconds: float | None, reason: str = "") -> None:
        """One run ended in ``outcome`` after ``seconds`` (None: unknown, e.g. a lost worker)."""
        self._measure(outcome, seconds, reason)
        await self.count(*activity_names(outcome, reason))

    def ended_writes(
        self, outcome: Outcome, seconds: float | None, reason: str = ""
    ) -> Callable[[Pipeline], None]:
        """:meth:`ended`, with the shared counters sent in a pipeline the caller runs."""
        self._measure(outcome, seconds, reason)
        names = activity_names(outcome, reason)
        return lambda pipe: self.activity.add_counts(pipe, names)

    def _measure(self, outcome: Outcome, seconds: float | None, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.job_attempts.labels(outcome=outcome).inc()
            if seconds is not None:
                self.metrics.job_duration.labels(outcome=outcome).observe(seconds)
            if outcome == "dead":
                self.metrics.dead_lettered.labels(reason=short_reason(reason)).inc()

    async def interrupted(self) -> None:
        """A run whose worker stopped: a failed attempt, with no outcome of its own."""
        await self.count("failed")

    async def count(self, *names: str) -> None:
        try:
            for name in names:
                await self.activity.count(name)
        except (RedisError, OSError) as exc:
            structlog.get_logger("reactor.job").warning(
                "activity counters not updated", error=str(exc)
            )
