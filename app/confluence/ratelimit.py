"""Rate-limit headers of a Confluence response, read into a budget :class:`Observation`.

Headers (see the Confluence rate-limiting docs and the Forge notes in the references):

* ``X-RateLimit-Limit`` / ``-Remaining``: integers; ``X-RateLimit-Reset``: an ISO 8601 time
  (``2026-03-26T16:00Z``); ``X-RateLimit-NearLimit: true`` below 20 % of the quota.
* ``RateLimit-Reason``: ``confluence-quota-global-based``, ``-tenant-based``, ``-burst-based``
  (live values vary, so it is passed through as text).
* ``Retry-After``: seconds (or an HTTP date) on 429 and some 503 responses.
* Structured quota headers ``RateLimit-Policy: "global-app-quota";q=65000;w=3600`` and
  ``RateLimit: "global-app-quota";r=17842;t=2107`` (comma-separated entries, any order).
* Before enforcement every one of these may come with a ``Beta-`` or ``X-Beta-`` prefix, meaning
  "you *would* have been limited".

Precedence: the enforced (unprefixed) headers, then ``Beta-``, then ``X-Beta-``; within each,
the structured header, which names the points policy, then ``X-RateLimit-*``, taking limit,
remaining and reset only from sources that agree on the limit (:func:`quota_fields`).
``X-RateLimit-Limit``/``-Remaining`` carry the points quota on Confluence today, but the same
names carry older request counters elsewhere (a few hundred requests): next to a points policy,
an ``X-RateLimit-*`` pair with another limit is a different counter and is ignored, never mixed
with the points figures. Beta figures stand in only where no enforced one is given, and fill a
missing field only when they describe the same quota (a 429 of the app's shared quota that also
warns about a tenant's own quota in beta headers is the shared quota's). Beta values feed the
pacing fields (limit, remaining, reset, near_limit) but not ``retry_after`` or ``reason``
unless the response is itself a 429: a beta header on a 200 is a warning, not a stop. Every
rate-limit header seen is kept in ``raw`` (lower-cased names). ``tenant_scoped`` says the
figures are one tenant's own quota (``tenant-app-quota``, a tenant-based reason), which the
budget does not take for the app's shared one; the enforced headers decide it when they say
anything (:func:`quota_fields` gives both in one pass).
Pure code: a function of (status, headers, now).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from app.budget.hook import MAX_WAIT_SECONDS, Observation

T = TypeVar("T")
_PREFIXES = ("", "beta-", "x-beta-")
# No quota, remaining figure or delay in seconds a server sends comes near this; a header
# value beyond it (hundreds of digits, say) is not a figure, and could not be added to a time.
_MAX_FIGURE = 10**15


def _is_rate_header(name: str) -> bool:
    return "ratelimit" in name or name.endswith("retry-after")


def _int(value: str | None) -> int | None:
    """An integer header value; None for text that is not one or is out of any range."""
    if value is None:
        return None
    text = value.strip()
    if len(text.lstrip("+-")) > len(str(_MAX_FIGURE)):
        return None  # not parsed at all: converting thousands of digits is slow
    try:
        number = int(text)
    except ValueError:
        return None
    return number if abs(number) < _MAX_FIGURE else None


def parse_reset(value: str | None, now: float) -> float | None:
    """Epoch seconds from an ISO 8601 time; bare numbers are epoch seconds or a delay."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            return None
        return min(number if number > 1e9 else now + number, now + MAX_WAIT_SECONDS)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return min(moment.timestamp(), now + MAX_WAIT_SECONDS)
    except (ValueError, OverflowError):
        return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``Retry-After``: delta-seconds or an HTTP date.

    None for what is not one (a negative or endless number included); at most
    ``MAX_WAIT_SECONDS``: the quota is hourly, and a wait of days would stop every worker.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            return None
        return min(number, MAX_WAIT_SECONDS)
    try:
        moment = parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return min(max(0.0, moment.timestamp() - now), MAX_WAIT_SECONDS)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_structured(value: str | None) -> dict[str, dict[str, str]]:
    """``"name";k=v;k=v, "other";k=v`` -> {name: {k: v}} (IETF RateLimit header shape)."""
    entries: dict[str, dict[str, str]] = {}
    if not value:
        return entries
    for chunk in value.split(","):
        parts = [p.strip() for p in chunk.split(";") if p.strip()]
        if not parts:
            continue
        name = parts[0].strip('"')
        params: dict[str, str] = {}
        for part in parts[1:]:
            key, _, val = part.partition("=")
            params[key.strip().lower()] = val.strip().strip('"')
        entries[name] = params
    return entries


def _chosen_policy(
    headers: dict[str, str], prefix: str
) -> tuple[str | None, dict[str, dict[str, str]], dict[str, dict[str, str]], int | None]:
    """The structured policy the figures come from (the one with the least remaining)."""
    state = parse_structured(headers.get(f"{prefix}ratelimit"))
    policy = parse_structured(headers.get(f"{prefix}ratelimit-policy"))
    best: tuple[int, str] | None = None
    for name, params in state.items():
        remaining = _int(params.get("r"))
        if remaining is not None and (best is None or remaining < best[0]):
            best = (remaining, name)
    chosen = best[1] if best else next(iter(state), None) or next(iter(policy), None)
    return chosen, state, policy, (best[0] if best else None)


def _structured(
    headers: dict[str, str], prefix: str, now: float
) -> tuple[int | None, int | None, float | None]:
    """(limit, remaining, reset) from ``<prefix>RateLimit`` and ``<prefix>RateLimit-Policy``."""
    chosen, state, policy, remaining = _chosen_policy(headers, prefix)
    if chosen is None:
        return None, None, None
    limit = _int(policy.get(chosen, {}).get("q"))
    seconds = _int(state.get(chosen, {}).get("t"))
    # seconds to the reset: believed up to MAX_WAIT_SECONDS, and never a time in the past
    reset = now + min(seconds, MAX_WAIT_SECONDS) if seconds is not None and seconds >= 0 else None
    return limit, remaining, reset


def _scope(raw: dict[str, str], prefix: str) -> bool | None:
    """Whether ``prefix``'s headers describe one tenant's own quota; None if they say nothing.

    Said by the structured policy the figures come from (``tenant-app-quota``) or, without
    one, by a reason header naming the tenant (``confluence-quota-tenant-based``); bare
    ``X-RateLimit-*`` figures are the app's shared quota.
    """
    chosen, _, _, _ = _chosen_policy(raw, prefix)
    if chosen is not None:
        return "tenant" in chosen.lower()
    reasons = [raw.get(f"{prefix}{name}") for name in ("ratelimit-reason", "x-ratelimit-reason")]
    reason = _first(reasons)
    if reason is not None:
        return "tenant" in reason.lower()
    if any(f is not None for f in _legacy(raw, prefix, 0.0)):
        return False
    return None


Fields = tuple[int | None, int | None, float | None]


def _legacy(raw: dict[str, str], prefix: str, now: float) -> Fields:
    """(limit, remaining, reset) from ``<prefix>X-RateLimit-*`` (or ``RateLimit-Limit``)."""
    limit = _int(raw.get(f"{prefix}x-ratelimit-limit"))
    if limit is None:
        limit = _int(raw.get(f"{prefix}ratelimit-limit"))
    reset = parse_reset(raw.get(f"{prefix}x-ratelimit-reset"), now)
    if reset is None:
        reset = parse_reset(raw.get(f"{prefix}ratelimit-reset"), now)
    return limit, _int(raw.get(f"{prefix}x-ratelimit-remaining")), reset


def _tier(raw: dict[str, str], prefix: str, now: float) -> Fields:
    """One prefix's (limit, remaining, reset): structured first, then ``X-RateLimit-*``.

    When the structured points policy gives a limit, the ``X-RateLimit-*`` figures count only
    if they state the same limit (otherwise they are another counter, or cannot be told
    apart from one).
    """
    structured = _structured(raw, prefix, now)
    legacy = _legacy(raw, prefix, now)
    if structured[0] is not None and legacy[0] != structured[0]:
        return structured
    return (
        _first((structured[0], legacy[0])),
        _first((structured[1], legacy[1])),
        _first((structured[2], legacy[2])),
    )


def quota_fields(raw: dict[str, str], now: float) -> tuple[Fields, bool]:
    """The points quota's (limit, remaining, reset) from lower-cased rate-limit headers, and
    whether they are one tenant's own quota (``tenant_scoped``).

    Prefixes in order: unprefixed (enforced), ``Beta-``, ``X-Beta-``. The first that gives
    any figure gives the quota; a later one fills a field it lacks only when it describes the
    same quota (same scope, and the same limit where both state one). Beta figures about a
    tenant's own quota never stand in for the enforced shared quota's, nor the other way. The
    scope is said by the first prefix that says anything: a 429 from the app's shared quota
    that also carries a ``Beta-`` warning about a tenant's quota is the shared quota's.
    """
    tiers = [(_tier(raw, prefix, now), _scope(raw, prefix)) for prefix in _PREFIXES]
    scoped = _first(scope for _, scope in tiers) or False
    found = [(fields, scope) for fields, scope in tiers if any(f is not None for f in fields)]
    if not found:
        return (None, None, None), scoped
    (limit, remaining, reset), scope = found[0]
    for (other_limit, other_remaining, other_reset), other_scope in found[1:]:
        if bool(other_scope) != bool(scope):
            continue
        if limit is not None and other_limit is not None and other_limit != limit:
            continue
        limit = limit if limit is not None else other_limit
        remaining = remaining if remaining is not None else other_remaining
        reset = reset if reset is not None else other_reset
    return (limit, remaining, reset), scoped


def _first(values: Iterable[T | None]) -> T | None:
    return next((v for v in values if v is not None), None)


def observe(
    status: int,
    headers: Iterable[tuple[str, str]],
    *,
    now: float,
    actual_cost: int | None = None,
) -> Observation:
    """The :class:`Observation` for one response's status and headers (name/value pairs)."""
    raw: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if _is_rate_header(key):
            raw[key] = f"{raw[key]}, {value}" if key in raw else value
    (limit, remaining, reset), scoped = quota_fields(raw, now)
    near = [
        raw.get(f"{p}x-ratelimit-nearlimit") or raw.get(f"{p}ratelimit-nearlimit")
        for p in _PREFIXES
    ]
    stop_prefixes = _PREFIXES if status == 429 else ("",)
    reason = _first(
        raw.get(f"{p}{name}")
        for p in stop_prefixes
        for name in ("ratelimit-reason", "x-ratelimit-reason")
    )
    retry_after = _first(parse_retry_after(raw.get(f"{p}retry-after"), now) for p in stop_prefixes)
    return Observation(
        status=status,
        limit=limit,
        remaining=remaining,
        reset_epoch=reset,
        near_limit=any(v is not None and v.strip().lower() == "true" for v in near),
        reason=reason,
        retry_after=retry_after,
        actual_cost=actual_cost,
        raw=raw,
        tenant_scoped=scoped,
    )
