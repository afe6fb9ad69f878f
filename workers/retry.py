"""How a job run ends, decided in one place: defer, retry with backoff, or dead-letter.

Pure functions of the exception, the attempt count and the settings' schedule::

    app.errors.Defer                          -> run again after its delay; not an attempt
    BudgetExhausted, RateLimited (a 429)      -> the same, after retry_at / Retry-After plus
                                                 up to ``jitter`` x delay (at most
                                                 DEFER_JITTER_MAX_SECONDS), never earlier
    app.errors.PermanentFailure, and Confluence errors that retrying cannot fix
    (``permanent``: 400, 401, 403, 404, other 4xx, not editable)
                                              -> dead-letter now
    TransientFailure, TimeoutError, any other -> retry after schedule[n-1] +/- jitter (or
                                                 after a 5xx's Retry-After, if later),
                                                 dead-letter once the schedule is used up
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from app.budget.hook import BudgetExhausted
from app.confluence.errors import ConfluenceError, RateLimited
from app.errors import Defer, PermanentFailure

ERROR_TEXT_LIMIT = 500
# Jobs deferred by the budget all learn the same time (the hour's reset, one Retry-After);
# spreading them a little keeps thousands of one tenant's jobs from waking in one burst.
DEFER_JITTER_MAX_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["defer", "retry", "dead"]
    delay: float
    reason: str
    counts: bool


def describe(exc: BaseException) -> str:
    """``Type: message``, bounded in length."""
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not text:
        text = "the job ran longer than REACTOR_JOB_TIMEOUT_SECONDS"
    described = f"{name}: {text}" if text else name
    return described[:ERROR_TEXT_LIMIT]


def backoff(
    attempt: int,
    schedule: Sequence[float],
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds before the retry that follows failed ``attempt`` (1-based); None when used up."""
    if attempt < 1 or attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    return max(0.0, base * (1 + jitter * (2 * rand() - 1)))


def spread(delay: float, jitter: float, rand: Callable[[], float] = random.random) -> float:
    """``delay`` plus up to ``jitter`` x delay (capped): a budget wait, never shortened."""
    return delay + min(DEFER_JITTER_MAX_SECONDS, delay * jitter) * rand()


def decide(
    exc: BaseException,
    previous_attempts: int,
    schedule: Sequence[float],
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The outcome of a run that raised ``exc`` after ``previous_attempts`` failed attempts."""
    if isinstance(exc, BudgetExhausted):
        return Decision("defer", spread(exc.delay, jitter, rand), exc.reason, counts=False)
    if isinstance(exc, Defer):
        return Decision("defer", exc.delay, exc.reason, counts=False)
    reason = describe(exc)
    if isinstance(exc, RateLimited):
        return Decision("defer", spread(exc.delay, jitter, rand), reason, counts=False)
    if isinstance(exc, PermanentFailure) or (isinstance(exc, ConfluenceError) and exc.permanent):
        return Decision("dead", 0.0, reason, counts=True)
    delay = backoff(previous_attempts + 1, schedule, jitter, rand)
    if delay is None:
        return Decision("dead", 0.0, reason, counts=True)
    asked = exc.retry_after if isinstance(exc, ConfluenceError) else None
    if asked is not None and asked > delay:
        delay = spread(asked, jitter, rand)  # a 503 saying when to come back: not sooner
    return Decision("retry", delay, reason, counts=True)
