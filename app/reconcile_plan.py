"""Reconciliation arithmetic (pure): sweep windows, CQL, and which versions were never seen.

A sweep asks CQL for pages and blog posts modified since ``since`` (the last completed sweep's
start, minus an overlap for clock skew), newest first. CQL reads absolute dates in the calling
user's time zone, which an app cannot know, so every bound is written relative to the search
server's own clock (``now("-17m")``): no time zone enters the query. Minutes are the unit, so
windows are widened to whole minutes, never narrowed.

A run that stops early (bounded per run, budget, crash) keeps its search cursor and an
``upper`` bound: the ``lastModified`` of the oldest item it finished. The next run goes on at
the cursor; without one it asks only for what is older than ``upper`` (:func:`build_cql`), so
no finished page is read twice except within the pad (the overlap) and a minute of the bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

MINUTE_MS = 60_000
CONTENT_TYPES = ("page", "blogpost")


def minutes_back(now_ms: int, moment_ms: int) -> int:
    """Whole minutes from ``moment_ms`` to ``now_ms``, rounded up (at least 1)."""
    return max(1, math.ceil((now_ms - moment_ms) / MINUTE_MS))


def window_start(
    watermark_ms: int | None, first_ms: int, overlap_seconds: float, installed_ms: int = 0
) -> int:
    """Where a new sweep starts: the watermark minus the overlap (``first_ms`` itself before
    any sweep), never before ``installed_ms``: what changed before the install was never ours
    to react to (an early sweep's overlap would otherwise reach back past it)."""
    if watermark_ms is None:
        return first_ms
    return max(installed_ms, watermark_ms - int(overlap_seconds * 1000))


def lower_minutes(now_ms: int, since_ms: int, lead_ms: int = 0) -> int:
    """How many minutes back from Confluence's ``now()`` a query built at ``now_ms`` reaches:
    the window rounded up, plus ``lead_ms`` (how late Confluence may evaluate it), plus one
    minute (rounding up alone may leave no slack at all)."""
    return minutes_back(now_ms + max(0, lead_ms), since_ms) + 1


def reach_ms(now_ms: int, since_ms: int, lead_ms: int = 0) -> int:
    """The latest moment at which Confluence may evaluate the query built at ``now_ms`` (with
    ``lead_ms``) and still reach back to ``since``: its lower bound is ``now("-Nm")``, evaluated
    when each request of its cursor arrives, so the bound creeps forward as time passes. A page
    answered later may have left out the window's oldest hits."""
    return since_ms + lower_minutes(now_ms, since_ms, lead_ms) * MINUTE_MS


def build_cql(
    now_ms: int,
    since_ms: int,
    upper_ms: int | None = None,
    types: tuple[str, ...] = CONTENT_TYPES,
    *,
    lead_ms: int = 0,
    pad_ms: int = 0,
) -> str:
    """The sweep's query: ``types`` modified in ``[since, upper]`` (``upper`` open when None).

    ``now_ms`` is the worker's clock, but Confluence applies the relative bounds to its own;
    ``pad_ms`` widens both bounds by that much, so a skew between the clocks smaller than it
    loses nothing (what the pad brings in is read again, or read and not enqueued). The lower
    bound reaches back to ``since - pad`` while Confluence evaluates the query before
    :func:`reach_ms` of that (``lead_ms`` widens it for calls that may wait long, e.g. for
    budget); hits before ``since`` are read but not enqueued. The upper bound is padded by a
    minute more, so that items sharing the bound's minute are read again (and found already
    seen) rather than skipped.
    """
    clauses = [
        f"type in ({','.join(types)})",
        f'lastmodified >= now("-{lower_minutes(now_ms, since_ms - pad_ms, lead_ms)}m")',
    ]
    if upper_ms is not None:
        below = (now_ms - upper_ms - pad_ms) // MINUTE_MS - 1
        if below > 0:
            clauses.append(f'lastmodified <= now("-{below}m")')
    return " and ".join(clauses) + " order by lastmodified desc"


def parse_time_ms(text: str | None) -> int | None:
    """Epoch milliseconds of an ISO 8601 time as Confluence prints it; None when unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)


def probe_versions(current: int, cap: int) -> range:
    """The versions whose delivery is checked: the newest ``cap`` up to ``current``."""
    return range(max(1, current - cap + 1), current + 1)


def missing_versions(current: int, seen: set[int], created_in_window: bool, cap: int) -> list[int]:
    """Versions of one item that changed in the window and that the pipeline never saw.

    ``seen`` holds the versions (within :func:`probe_versions`) the pipeline has a record of.
    Content created inside the window had every version inside it. Older content: versions
    above the lowest seen one are gaps in what was delivered; with nothing seen at all, only
    the current version is known to be in the window (its earlier versions may predate it).
    """
    probe = probe_versions(current, cap)
    if created_in_window:
        floor = probe.start - 1
    elif seen:
        floor = min(seen)
    else:
        floor = current - 1
    return [v for v in probe if v > floor and v not in seen]


def event_type(kind: str, version: int) -> str:
    """``page.created`` for version 1, ``page.updated`` after (``blogpost.*`` likewise)."""
    return f"{kind}.created" if version == 1 else f"{kind}.updated"


def content_kind(search_type: str | None) -> str | None:
    """The event family of a CQL hit (``page`` or ``blogpost``); None for anything else."""
    return search_type if search_type in CONTENT_TYPES else None


@dataclass(frozen=True, slots=True)
class TrashChange:
    """A page that entered or left the trash between two listings."""

    content_id: str
    version: int
    type: str  # page.trashed | page.restored | page.deleted


def trash_member(content_id: str, version: int) -> str:
    return f"{content_id}:{version}"


def split_member(member: str) -> tuple[str, int]:
    content_id, _, version = member.rpartition(":")
    return content_id, int(version)


def split_members(members: Iterable[str]) -> list[tuple[str, int]]:
    """``(content id, version)`` of trash list members, in order."""
    return sorted(split_member(m) for m in members)


def left_trash_type(status: str | None) -> str:
    """Where a page that left the trash went: back (``current``/``archived``) or purged."""
    return "page.restored" if status in ("current", "archived") else "page.deleted"


def trash_rank(
    interval_seconds: int, now_ms: int, at_ms: int | None, under_way: bool
) -> int | None:
    """When a tenant's trash is listed: None when not due; else a sort key, lowest first (a
    listing under way, never listed, listed longest ago). ``at_ms`` is the start of the last
    completed listing (or when one failed); an interval of 0 turns listings off."""
    if interval_seconds <= 0:
        return None
    if under_way:
        return -1
    if at_ms is None:
        return 0
    return at_ms if now_ms - at_ms >= interval_seconds * 1000 else None


# A tenant whose turns fail (its site refuses the app, Confluence answers 5xx) waits before
# the next: a minute after the first failure, doubling up to an hour, so it neither takes a
# sweep slot from the healthy tenants every tick nor spends their points on calls that fail.
FAILURE_WAIT_FIRST_SECONDS = 60
FAILURE_WAIT_MOST_SECONDS = 3600


def failure_wait_seconds(failures: int) -> int:
    """How long a tenant waits after ``failures`` failed turns in a row (0: none)."""
    if failures <= 0:
        return 0
    doubled: int = FAILURE_WAIT_FIRST_SECONDS * 2 ** min(failures - 1, 16)
    return min(FAILURE_WAIT_MOST_SECONDS, doubled)
