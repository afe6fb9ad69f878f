"""``reactor status`` and ``reactor tenants``: the ops API in a terminal.

They call the JSON ops API over HTTP with an operator token (``--token``, else the first of
``REACTOR_DASHBOARD_TOKEN``), so they show exactly what the dashboard shows, go through the
same sign-in, and work against a remote deployment without Redis credentials. ``--url``
defaults to ``REACTOR_BASE_URL``.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from app.cli import positive_float
from app.dashboard.auth import FAILURE_WINDOW_SECONDS
from app.errors import ConfigError
from app.settings import load_settings
from app.terminal import printable

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """One character per value, scaled to the largest (pure)."""
    top = max(values, default=0)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, v * (len(BARS) - 1) // top)] for v in values)


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) or "—"


def _when(epoch: float | None) -> str:
    if not epoch:
        return "—"
    seconds = epoch / 1000 if epoch > 1e11 else epoch
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S UTC")


def _ago(epoch: float | None, now: float) -> str:
    if not epoch:
        return "never"
    seconds = epoch / 1000 if epoch > 1e11 else epoch
    delta = max(0, int(now - seconds))
    return f"{delta}s ago" if delta < 120 else f"{delta // 60}m ago"


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def deliveries(received: dict[str, int], rejected: dict[str, int]) -> str:
    """Webhook deliveries per route, each split into accepted and rejected (pure).

    ``received`` counts every delivery of a route, refused ones included; ``rejected`` is keyed
    ``<route>:<reason>``. Events stored some other way (``reactor receive``, reconciliation)
    are no delivery, so these need not add up to the events received.
    """
    refused: dict[str, int] = {}
    for key, n in rejected.items():
        route = key.partition(":")[0]
        refused[route] = refused.get(route, 0) + int(n)
    parts = []
    for route in sorted(set(received) | set(refused)):
        no = refused.get(route, 0)
        total = max(int(received.get(route, 0)), no)
        split = f"{total - no} accepted" + (f", {no} rejected" if no else "")
        parts.append(f"{route} {total} ({split})")
    return ", ".join(parts) or "—"


def format_status(data: dict[str, Any], url: str) -> str:
    """The one-screen summary of ``GET /api/status`` (pure)."""
    now = float(data.get("now") or time.time())
    q, hour = data["queue"], data["hour"]
    lines = [
        f"Confluence Reactor  {url}  {_when(now)}",
        f"queue        queued {q['queued']}  running {q['running']}  deferred {q['deferred']}"
        f"  waiting in line {q.get('waiting', 0)}"
        + (f"  oldest due {_age(q['oldest_due_seconds'])}" if q.get("oldest_due_seconds") else ""),
        f"last hour    received {hour['received_total']} events"
        f"  done {hour['done']}  failed {hour['failed']}  dead {hour['dead']}",
        f"             webhook deliveries {deliveries(hour['received'], hour['rejected'])}",
        f"             rejected {_pairs(hour['rejected'])}  deferred {_pairs(hour['deferred'])}",
        f"per minute   {sparkline(hour['series']['received'])}  (received, last hour)",
    ]
    dead = data.get("dead_letters")
    lines.append(
        f"dead letters {dead if dead is not None else '—'}"
        + ("  (reactor dlq list; retry in the dashboard)" if dead else "")
    )
    workers = data.get("workers", {})
    lines.append(
        f"workers      {workers.get('alive', 0)} alive"
        + ("" if workers.get("alive") else "  << no worker is running: nothing is processed")
    )
    budget = data.get("budget")
    if budget:
        paused = f"until {_when(budget['paused_until'])}" if budget.get("paused_until") else "no"
        external = budget.get("external") or 0
        # What this app spent, and apart from it what the server counts beyond that (other
        # clients of the quota, or the rest of an hour a quota 429 wrote off).
        elsewhere = f" (of which {external} outside this app's calls)" if external else ""
        when = "exhausted at" if budget["remaining"] == 0 else "runs out at"
        lines.append(
            f"budget       spent {budget['spent']}{elsewhere} / {budget['quota']}"
            f"  remaining {budget['remaining']}  429s {budget['n429']}  paused {paused}"
            f"  {when} {_when(budget.get('forecast'))}"
        )
    failing = data.get("failing") or []
    lines.append("failing now" + ("" if failing else "  none"))
    for row in failing[:8]:
        lines.append(
            f"  {row['tenant']:<28} {row['id'][:20]}  {row['type']:<16} {row['state']:<7}"
            f" {str(row['reason'])[:60]}  ({_ago(row.get('updated'), now)})"
        )
    return "\n".join(lines)


def format_tenants(data: dict[str, Any], now: float | None = None) -> str:
    """Connect tenants and Forge installations of ``GET /api/tenants`` (pure)."""
    now = now if now is not None else time.time()
    lines = ["Connect tenants"]
    for t in data.get("connect", []):
        lines.append(
            f"  {t['base_url']:<40} {t['status']:<12} last event {_ago(t.get('last_event'), now)}"
            f"  events {t['events']}  failed {t['failed']}  error rate {t['error_rate']}"
            f"  clientKey {t.get('client_key', '?')}"
        )
    if not data.get("connect"):
        lines.append("  none")
    lines.append("Forge installations")
    for i in data.get("forge", []):
        lines.append(
            f"  {i['installation_id'][-36:]:<36} {i['tenant']:<30} {i['status']:<12}"
            f" last event {_ago(i.get('last_event'), now)}  token {i['token']}"
            f"  error rate {i['error_rate']}"
        )
    if not data.get("forge"):
        lines.append("  none")
    return "\n".join(lines)


def throttled(url: str, retry_after: str | None) -> str:
    """The line for a 429: the sign-in throttle of wrong operator tokens (pure)."""
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else FAILURE_WINDOW_SECONDS
    minutes = max(1, -(-seconds // 60))
    return (
        f"{url}: too many wrong operator tokens from this address (the sign-in throttle); "
        f"wait up to {minutes} minute{'s' if minutes > 1 else ''}, and check the token "
        "(--token or REACTOR_DASHBOARD_TOKEN)"
    )


def _fetch(args: argparse.Namespace, path: str) -> tuple[dict[str, Any], str]:
    settings = load_settings()
    url = (args.url or settings.base_url).rstrip("/")
    token = args.token or (settings.dashboard_tokens[:1] or [""])[0]
    if not token:
        raise ConfigError("REACTOR_DASHBOARD_TOKEN: needed to call the ops API (or pass --token)")
    try:
        answer = httpx.get(
            f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout
        )
    except httpx.InvalidURL as exc:
        raise ConfigError(f"--url: {url!r} is not a valid URL ({exc})") from None
    except httpx.HTTPError as exc:
        raise ConfigError(f"{url}: cannot reach the ops API ({type(exc).__name__})") from None
    if answer.status_code == 401:
        raise ConfigError(f"{url}: the operator token was refused")
    if answer.status_code == 429:
        raise ConfigError(throttled(url, answer.headers.get("retry-after")))
    if answer.status_code != 200:
        raise ConfigError(f"{url}{path}: HTTP {answer.status_code}")
    try:
        data = answer.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{url}{path}: the answer is not the ops API's JSON")
    return data, url


def cmd_status(args: argparse.Namespace) -> int:
    data, url = _fetch(args, "/api/status")
    print(printable(format_status(data, url)))
    unhealthy = not data.get("workers", {}).get("alive") or bool(data.get("dead_letters"))
    return 1 if unhealthy and args.check else 0


def cmd_tenants(args: argparse.Namespace) -> int:
    data, _ = _fetch(args, "/api/tenants")
    print(printable(format_tenants(data)))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="service URL (default REACTOR_BASE_URL)")
    parser.add_argument(
        "--token", default=None, help="operator token (default REACTOR_DASHBOARD_TOKEN)"
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=10.0, help="seconds to wait for the answer"
    )


def register(sub: Any) -> None:
    status = sub.add_parser("status", help="one-screen summary: queue, failures, workers, budget")
    _common(status)
    status.add_argument(
        "--check", action="store_true", help="exit 1 when no worker runs or dead letters exist"
    )
    status.set_defaults(handler=cmd_status)
    tenants = sub.add_parser("tenants", help="Connect tenants and Forge installations")
    _common(tenants)
    tenants.set_defaults(handler=cmd_tenants)
