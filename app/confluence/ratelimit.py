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

Precedence per field: the ``X-RateLimit-*`` header, then the structured header, then their beta
variants. Beta values feed the pacing fields (limit, remaining, reset, near_limit) but not
``retry_after`` or ``reason`` unless the response is itself a 429: a beta header on a 200 is a
warning, not a stop. Every rate-limit header seen is kept in ``raw`` (lower-cased names).
Pure code: a function of (status, headers, now).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from app.budget.hook import Observation

T = TypeVar("T")
_PREFIXES = ("", "beta-", "x-beta-")


def _is_rate_header(name: str) -> bool:
    return "ratelimit" in name or name.endswith("retry-after")


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


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
        return number if number > 1e9 else now + number
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``Retry-After``: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


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


def _structured(
    headers: dict[str, str], prefix: str, now: float
) -> tuple[int | None, int | None, float | None]:
    """(limit, remaining, reset) from ``<prefix>RateLimit`` and ``<prefix>RateLimit-Policy``."""
    state = parse_structured(headers.get(f"{prefix}ratelimit"))
    policy = parse_structured(headers.get(f"{prefix}ratelimit-policy"))
    best: tuple[int, str] | None = None
    for name, params in state.items():
        remaining = _int(params.get("r"))
        if remaining is not None and (best is None or remaining < best[0]):
            best = (remaining, name)
    chosen = best[1] if best else next(iter(state), None) or next(iter(policy), None)
    if chosen is None:
        return None, None, None
    limit = _int(policy.get(chosen, {}).get("q"))
    seconds = _int(state.get(chosen, {}).get("t"))
    reset = now + seconds if seconds is not None else None
    return limit, (best[0] if best else None), reset


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
    limits: list[int | None] = []
    remainings: list[int | None] = []
    resets: list[float | None] = []
    for prefix in _PREFIXES:
        s_limit, s_remaining, s_reset = _structured(raw, prefix, now)
        limits += [_int(raw.get(f"{prefix}x-ratelimit-limit")), s_limit]
        limits.append(_int(raw.get(f"{prefix}ratelimit-limit")))
        remainings += [_int(raw.get(f"{prefix}x-ratelimit-remaining")), s_remaining]
        resets += [parse_reset(raw.get(f"{prefix}x-ratelimit-reset"), now), s_reset]
        resets.append(parse_reset(raw.get(f"{prefix}ratelimit-reset"), now))
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
        limit=_first(limits),
        remaining=_first(remainings),
        reset_epoch=_first(resets),
        near_limit=any(v is not None and v.strip().lower() == "true" for v in near),
        reason=reason,
        retry_after=retry_after,
        actual_cost=actual_cost,
        raw=raw,
    )
