"""The one interface between the job layer and the reactions: ``await dispatch(event, job)``.

The worker finds its dispatcher in the arq context (``ctx["dispatch"]``); the reactions layer
installs its router there. Until one is installed, :func:`log_only` records that the event
arrived. A dispatcher signals how the job ends by raising from :mod:`app.errors`:
``Defer`` (wait, not an attempt), ``PermanentFailure`` (dead-letter now), anything else
(retry with backoff). Returning normally means done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.eventlog import Writes
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a dispatcher gets besides the event: this run, shared clients, a bound logger.

    ``client_log`` is the logger for the Confluence clients the job makes: the job layer sets
    an :class:`app.dashboard.calls.CallRecorder`, so the job's calls are counted and listed on
    its detail page. None: use ``log``.

    ``after``: bookkeeping writes that may wait for the end of the run (each adds commands to
    a pipeline); the job layer sends them in the round trip that ends the run, or on their own
    when the run fails. None (a dispatcher called outside the job layer): write at once.
    """

    event_id: str
    attempt: int
    settings: Settings
    redis: Redis
    log: Any
    resources: dict[str, Any] = field(default_factory=dict)
    client_log: Any = None
    after: list[Writes] | None = None

    @property
    def confluence_log(self) -> Any:
        return self.client_log if self.client_log is not None else self.log


class Dispatch(Protocol):
    async def __call__(self, event: Event, job: JobContext) -> None: ...


class LatestOnly(Protocol):
    """Whether a queued ``older`` event may be skipped because ``newer`` of its content waits."""

    def __call__(self, older: Event, newer_type: str) -> bool: ...


async def log_only(event: Event, job: JobContext) -> None:
    """The default dispatcher: no reactions are installed, so the event is only logged."""
    job.log.info("event has no reactions", type=event.type, content_id=event.content_id)


def latest_only_from(settings: Settings) -> LatestOnly | None:
    """Superseding from ``REACTOR_SUPERSEDE_TYPES``: both events' types must be listed. None
    when no type is (then nobody reads who waits behind a run)."""
    types = settings.supersede_event_types
    if not types:
        return None

    def latest_only(older: Event, newer_type: str) -> bool:
        return "*" in types or (older.type in types and newer_type in types)

    return latest_only


def bound_logger(event: Event) -> Any:
    return structlog.get_logger("reactor.job").bind(
        event_id=event.id, tenant=event.tenant, type=event.type
    )
