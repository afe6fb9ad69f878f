"""``reactor dlq list|show|retry|discard`` and ``reactor receive``: the pipeline from a shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.cli import positive_int
from app.errors import ConfigError, InvalidPayload, QueueUnavailable, UpstreamUnavailable
from app.settings import Settings, load_settings

Run = Callable[[Redis, Settings, argparse.Namespace], Awaitable[int]]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _with_redis(run: Run) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        from app import redis as redis_conn
        from app.logs import configure_logging

        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        if settings.redis_url is None:
            raise ConfigError("REACTOR_REDIS_URL: required (the URL `reactor dev` prints)")

        async def main() -> int:
            client = redis_conn.connect(
                str(settings.redis_url), socket_timeout=settings.redis_timeout_seconds
            )
            try:
                return await run(client, settings, args)
            finally:
                await client.aclose()

        try:
            return asyncio.run(main())
        except BrokenPipeError:
            # the reader went away (`reactor dlq list | head`): not the event store's fault
            quiet_stdout()
            return 0
        except UpstreamUnavailable as exc:  # the tenant store's own words
            print(f"reactor: {exc.detail}", file=sys.stderr)
            return 1
        except (RedisError, OSError, TimeoutError) as exc:
            # the URL may hold a password: name the failure, not the address
            print(
                f"reactor: the event store is unavailable ({type(exc).__name__})", file=sys.stderr
            )
            return 1

    return handler


def quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so the interpreter's own flush at exit
    does not raise again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


async def dlq_list(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    from app.dlq import DeadLetters, Filter
    from app.terminal import printable

    records = await DeadLetters(redis, settings).find(Filter(args.tenant, args.type), args.limit)
    if args.json:
        print(json.dumps([r.summary() for r in records]))
        return 0
    for r in records:
        line = (
            f"{r.id}  {_when(r.updated)}  {r.tenant}  {r.type}  attempts={r.attempts}  {r.reason}"
        )
        print(printable(line.replace("\n", " ")))
    print(f"{len(records)} dead event(s)", file=sys.stderr)
    return 0


async def dlq_show(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    from app.dlq import DeadLetters
    from app.masking import mask_secrets

    dead = await DeadLetters(redis, settings).show(args.event_id)
    if dead is None:
        print(f"reactor: {args.event_id} is not in the dead-letter store", file=sys.stderr)
        return 1
    attempts = [
        {
            "n": a.n,
            "replay": a.replay,
            "at": _when(a.started),
            "duration_ms": a.duration_ms,
            "outcome": a.outcome,
            "error": a.error,
        }
        for a in dead.attempts
    ]
    shown = {
        **dead.record.summary(),
        "attempts": attempts,
        "event": json.loads(dead.record.event_json),
    }
    print(json.dumps(mask_secrets(shown), indent=2))
    return 0


def non_empty(text: str) -> str:
    """A filter value: an empty one would silently mean "no filter"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def type_filter(text: str) -> str:
    """A ``--type`` value: an event type (``page.updated``; the Connect and Forge names of one
    are taken too). An unknown one would match nothing and look like an empty store."""
    from app.atlassian.events import EVENT_TYPES, event_type

    found = event_type(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"not an event type; one of {', '.join(EVENT_TYPES)}")
    return found


def _selection_problem(args: argparse.Namespace) -> str | None:
    """Why a retry/discard selection is refused, or None: ids, or --all (with filters)."""
    if args.all and args.event_ids:
        return "name event ids or use --all, not both"
    if not args.all and not args.event_ids:
        return "name event ids, or --all"
    if not args.all and (args.tenant or args.type):
        return "--tenant and --type narrow --all; with ids, name the ids only"
    return None


async def dlq_retry(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    problem = _selection_problem(args)
    if problem is not None:
        print(f"reactor: {problem}", file=sys.stderr)
        return 2
    from app.dlq import DeadLetters, Filter

    dlq = DeadLetters(redis, settings)
    if args.all:
        ids = await dlq.retry_all(Filter(args.tenant, args.type))
    else:
        outcomes = await dlq.replay_ids(args.event_ids)
        ids = [i for i, outcome in outcomes.items() if outcome == "replayed"]
        closing = [i for i, outcome in outcomes.items() if outcome == "closing"]
        for event_id in closing:
            print(
                f"reactor: {event_id}: the worker that ran it last is still closing that run;"
                " try again in a moment",
                file=sys.stderr,
            )
        _not_dead([i for i in args.event_ids if i not in closing], ids)
    for event_id in ids:
        print(f"replayed {event_id}")
    if args.all and not ids:
        print("reactor: no dead letter matched", file=sys.stderr)
    await _audit(redis, settings, "retry", args, ids)
    return 0 if ids or args.all else 1


async def dlq_discard(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    problem = _selection_problem(args)
    if problem is not None:
        print(f"reactor: {problem}", file=sys.stderr)
        return 2
    from app.dlq import DeadLetters, Filter

    dlq = DeadLetters(redis, settings)
    if args.all:
        ids = await dlq.discard_all(Filter(args.tenant, args.type))
    else:
        ids = await dlq.discard_ids(args.event_ids)
        _not_dead(args.event_ids, ids)
    for event_id in ids:
        print(f"discarded {event_id}")
    if args.all and not ids:
        print("reactor: no dead letter matched", file=sys.stderr)
    await _audit(redis, settings, "discard", args, ids)
    return 0 if ids or args.all else 1


def _not_dead(asked: list[str], done: list[str]) -> None:
    for event_id in sorted(set(asked) - set(done)):
        print(f"reactor: {event_id} is not in the dead-letter store", file=sys.stderr)


async def _audit(
    redis: Redis, settings: Settings, action: str, args: argparse.Namespace, done: list[str]
) -> None:
    """Record the action in the dashboard's audit log, as its pages and the ops API do."""
    from app.dashboard.audit import AuditLog

    missing = [] if args.all else [i for i in args.event_ids if i not in set(done)]
    detail: dict[str, Any] = {"ok": bool(done) or not missing, "count": len(done)}
    detail |= {"ids": done[:100], "via": "cli"}
    if missing:
        detail["not_dead"] = missing[:100]
    if args.all and (args.tenant or args.type):
        detail["filter"] = {"tenant": args.tenant, "type": args.type}
    await AuditLog(redis, settings.redis_prefix).record(
        "cli",
        f"dead_letter_{action}",
        target="all" if args.all else ",".join(args.event_ids[:20]),
        outcome="ok" if detail["ok"] else "failed",
        detail=detail,
    )


def build_event(tenant: str, name: str | None, body: Any) -> Any:
    """A Connect webhook name, a Forge ``avi:`` type or our own type, or the body's eventType."""
    from app.atlassian.events import CONNECT_EVENTS, from_connect, from_forge
    from app.errors import InvalidPayload

    if name is None or name.startswith("avi:"):
        if name is None and not (isinstance(body, dict) and "eventType" in body):
            raise InvalidPayload(
                "the body names no eventType (a Connect webhook body does not): pass --event, "
                "e.g. --event page_updated"
            )
        if name is not None and isinstance(body, dict) and "eventType" not in body:
            body = {**body, "eventType": name}
        return from_forge(tenant, body)
    by_type = {ours: connect for connect, ours in CONNECT_EVENTS.items()}
    return from_connect(tenant, by_type.get(name, name), body)


async def tenant_problem(redis: Redis, settings: Settings, tenant: str) -> str | None:
    """Why a worker here would never run ``tenant``'s events; None when it is installed.

    The worker's own lookup (``workers.clients``): a Connect tenant record decides (it must be
    installed or enabled); without one, a Forge installation serving the tenant is needed.
    """

    from app.crypto import SecretBox
    from app.installations import InstallationStore, is_forge_tenant
    from app.tenants import ACTIVE_STATUSES, TenantStore

    if not is_forge_tenant(tenant):
        found = await TenantStore(redis, settings).get_public(tenant)  # no secret decrypted
        if found is not None:
            status = found.status
            return None if status in ACTIVE_STATUSES else f"tenant {tenant!r} is {status}"
    # Only the registry is read (no token is decrypted): no REACTOR_SECRET_KEY needed.
    box = SecretBox(settings.secret_keys, lazy=True)
    installations = InstallationStore(redis, box, settings.redis_prefix)
    if await installations.installation_for_tenant(tenant) is not None:
        return None
    return f"tenant {tenant!r} is not installed (no Connect tenant or Forge installation)"


async def receive(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    from app.ingest import store
    from app.queue import EventQueue

    try:
        body = json.loads(await asyncio.to_thread(Path(args.file).read_text))
        event = build_event(args.tenant, args.event, body)
        problem = await tenant_problem(redis, settings, args.tenant)
        if problem is not None and not args.allow_unknown_tenant:
            print(
                f"reactor: {problem}, so a reaction that needs Confluence would dead-letter the "
                "event at once (install the app there first, or pass --allow-unknown-tenant)",
                file=sys.stderr,
            )
            return 1
        if problem is not None:
            print(f"reactor: warning: {problem}; storing the event anyway", file=sys.stderr)
        created = await store(EventQueue(redis, settings, batch=False), event, via="cli")
    except (OSError, ValueError, InvalidPayload, QueueUnavailable) as exc:
        print(f"reactor: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"id": event.id, "type": event.type, "duplicate": not created}))
    return 0


def tenant_id(text: str) -> str:
    """A tenant id as given; an empty one is refused (argparse type)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def register(sub: Any) -> None:
    """Add ``dlq`` and ``receive`` to the ``reactor`` command's subparsers."""
    dlq = sub.add_parser("dlq", help="list, inspect, replay or discard dead-lettered events")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--tenant", type=non_empty, default=None, help="only this tenant's events"
        )
        parser.add_argument(
            "--type", type=type_filter, default=None, help="only this event type (page.updated)"
        )

    listing = actions.add_parser("list", help="dead events, newest first")
    filters(listing)
    listing.add_argument("--limit", type=positive_int, default=100, help="at most this many")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=_with_redis(dlq_list))

    show = actions.add_parser("show", help="one dead event with every attempt's error")
    show.add_argument("event_id")
    show.set_defaults(handler=_with_redis(dlq_show))

    for name, run, text in (
        ("retry", dlq_retry, "replay dead events (ids, or --all with optional filters)"),
        ("discard", dlq_discard, "drop dead events for good (ids, or --all with filters)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("event_ids", nargs="*")
        action.add_argument("--all", action="store_true")
        filters(action)
        action.set_defaults(handler=_with_redis(run))

    recv = sub.add_parser(
        "receive",
        help="enqueue a recorded webhook payload (local development)",
        description="Enqueue a recorded Connect or Forge payload for an installed tenant.",
    )
    recv.add_argument(
        "--tenant",
        required=True,
        type=tenant_id,
        help="tenant id: an installed Connect clientKey, or forge:<cloudId>",
    )
    recv.add_argument(
        "--allow-unknown-tenant",
        action="store_true",
        help="store the event even when the tenant is not installed (a reaction that needs "
        "Confluence dead-letters it at once; replay it with `reactor dlq retry` once installed)",
    )
    recv.add_argument(
        "--event",
        default=None,
        help="page_updated (Connect), avi:confluence:updated:page (Forge) or page.updated; "
        "default: the body's eventType",
    )
    recv.add_argument("file", help="JSON payload file")
    recv.set_defaults(handler=_with_redis(receive))
