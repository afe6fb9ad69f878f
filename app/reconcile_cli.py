"""``reactor reconcile --tenant T --since ISO_TIME``: recover a known outage window at once.

The sweep itself lives in the worker package (:mod:`workers.reconcile`); it is loaded by import
path, as the worker is, because nothing in ``app`` imports ``workers``. The command runs one
sweep of the window ``[since, now]`` to its end (waiting when the budget asks it to), shows its
progress on stderr and prints a summary. An interrupted run continues where it stopped when
it is started again with the same ``--since``. It does not move the periodic sweep's watermark.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from app.budget.hook import BudgetExhausted, BudgetHook, Observation, Priority, Reservation
from app.cli import positive_int
from app.confluence.errors import ConfluenceError
from app.errors import ConfigError, UpstreamUnavailable
from app.settings import Settings, load_settings

BAR_WIDTH = 24
MAX_BUDGET_WAIT = 60.0
RERUN = "run the same command again (same --since) to resume"


def parse_since(text: str) -> int:
    """Epoch ms of an ISO 8601 time; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since: {text!r} is not an ISO time such as 2026-11-27T09:30Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class WaitingBudget:
    """A budget hook that waits for points instead of giving up (an operator's command waits).

    Waiting inside the call matters: a page of the sweep needs several calls, and a sweep that
    stopped at each refusal could start the same page over and over.
    """

    def __init__(self, inner: BudgetHook, stream: Any = None) -> None:
        self.inner = inner
        self.stream = stream or sys.stderr

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        while True:
            try:
                return await self.inner.reserve(tenant, cost, priority)
            except BudgetExhausted as exc:
                wait = min(MAX_BUDGET_WAIT, max(0.05, exc.delay))
                self.stream.write(f"\nwaiting {wait:.1f}s for budget: {exc.reason}\n")
                await asyncio.sleep(wait)

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        await self.inner.settle(reservation, observation)


class ProgressLine:
    """A progress bar over the window (newest first, so it fills as older hits are reached)."""

    def __init__(self, since_ms: int, now_ms: int, stream: Any = None) -> None:
        self.since = since_ms
        self.now = now_ms
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def fraction(self, upper: int | None) -> float:
        if upper is None or self.now <= self.since:
            return 0.0
        return min(1.0, max(0.0, (self.now - upper) / (self.now - self.since)))

    def __call__(self, report: Any) -> None:
        share = 1.0 if report.complete else self.fraction(report.upper)
        filled = round(share * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        line = (
            f"[{bar}] {share:4.0%}  pages {report.pages}  hits {report.items}  "
            f"never seen {report.found}  enqueued {report.enqueued}"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from app import redis as redis_conn
    from app.budget.redis_budget import RedisBudget

    since = parse_since(args.since)
    runtime: Any = importlib.import_module("workers.reconcile_runtime")
    sweep: Any = importlib.import_module("workers.reconcile")
    now = int(datetime.now(UTC).timestamp() * 1000)
    if since >= now:
        raise ConfigError("--since: must be in the past")
    progress = ProgressLine(since, now)
    redis = redis_conn.connect(
        str(settings.redis_url), socket_timeout=settings.redis_timeout_seconds
    )
    try:
        budget = WaitingBudget(RedisBudget(redis, settings))
        async with runtime.runtime(redis, settings, budget=budget, on_page=progress) as rt:
            known = {t.tenant: t for t in await rt.targets()}
            if args.tenant not in known:
                print(f"reactor: no installed tenant {args.tenant!r}", file=sys.stderr)
                return 2
            installed = known[args.tenant].installed_ms
            if since < installed:
                # What changed before the install is not the app's to react to (the periodic
                # sweep never reaches back that far either).
                print(
                    f"reactor: --since is before the install; sweeping from {_when(installed)}",
                    file=sys.stderr,
                )
                since = installed
                progress = ProgressLine(since, now)
            target = sweep.Target(args.tenant, since, installed)
            try:
                report = await rt.sweeper.run(
                    target, slot="manual", since_ms=since, max_items=args.max_items
                )
            except ConfluenceError as exc:  # what was read so far is saved page by page
                progress.close()
                print(f"reactor: Confluence error: {_failure(exc)}; {RERUN}", file=sys.stderr)
                return 1
            if report.busy:
                progress.close()
                print(f"reactor: a sweep of {args.tenant} is running; try again later")
                return 1
            if report.yielded is not None:
                progress.close()
                print(
                    f"reactor: the sweep cannot go on: {report.yielded}; {RERUN}", file=sys.stderr
                )
                return 1
    finally:
        await redis.aclose()
    progress.close()
    _print_summary(args, report, since)
    return 0 if report.complete else 1


def _failure(exc: ConfluenceError) -> str:
    """The error's kind, status and code (no URL or message: one short line)."""
    parts = [type(exc).__name__, str(exc.status or ""), exc.code or ""]
    return " ".join(p for p in parts if p)


def _print_summary(args: argparse.Namespace, report: Any, since: int) -> None:
    summary = {
        "tenant": report.tenant,
        "since": _when(since),
        "complete": report.complete,
        "hits": report.items,
        "never_seen": report.found,
        "enqueued": report.enqueued,
        "already_queued": report.found - report.enqueued,
    }
    if args.json:
        print(json.dumps(summary))
        return
    state = "complete" if report.complete else "stopped early; run again to continue"
    print(f"tenant {report.tenant}: changes since {summary['since']} ({state})")
    print(f"  pages and blog posts modified  {report.items}")
    print(f"  versions never seen            {report.found}")
    print(f"  reconcile events enqueued      {report.enqueued}")
    if summary["already_queued"]:
        print(f"  delivered meanwhile (deduped)  {summary['already_queued']}")


def cmd_reconcile(args: argparse.Namespace) -> int:
    from app.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.redis_url is None:
        raise ConfigError("REACTOR_REDIS_URL: required (the URL `reactor dev` prints)")
    try:
        return asyncio.run(reconcile(settings, args))
    except (RedisError, OSError, TimeoutError, UpstreamUnavailable) as exc:
        # the URL may hold a password: name the failure, not the address
        print(f"reactor: Redis is unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "reconcile", help="recover changes whose webhooks never came, since a given time"
    )
    parser.add_argument("--tenant", required=True, help="Connect clientKey or forge:<cloudId>")
    parser.add_argument("--since", required=True, help="ISO time, e.g. 2026-11-27T09:30Z")
    parser.add_argument(
        "--max-items", type=positive_int, default=None, help="stop after this many hits (resumable)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=cmd_reconcile)
