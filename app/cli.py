"""The ``reactor`` command. Each subcommand is wiring only: it builds settings and hands over."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Callable, Sequence

from app.errors import ConfigError
from app.settings import HEADER_SAFE_RULE, Settings, header_safe, load_settings

Handler = Callable[[argparse.Namespace], int]


def _settings() -> Settings:
    return load_settings()


# argparse types: a bad value ends in argparse's usage line and "argument --x: ..." (exit 2).


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (counts, limits, concurrency)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of at least 0 (seconds of leeway, UNIX times)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """A finite number above 0 (timeouts, time scales)."""
    value = _number(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def activity_interval(text: str) -> float:
    """Seconds between demo activities: 0 (none) or at least 1."""
    value = _number(text)
    if not math.isfinite(value) or not (value == 0 or value >= 1):
        raise argparse.ArgumentTypeError(f"must be 0 (none) or at least 1 second, not {text}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 1 to 65535."""
    value = _whole(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {value}")
    return value


def port_or_zero(text: str) -> int:
    """A TCP port, or 0 for any free one."""
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535 (0: any), not {value}")
    return value


def cmd_web(args: argparse.Namespace) -> int:
    from app import redis as redis_conn
    from app import web_server
    from app.logs import configure_logging

    if args.workers > 1:
        raise ConfigError(
            "--workers: one web process per container or host (each process would count its "
            "own /metrics, and scrapes would jump between them); scale with replicas instead"
        )
    web_server.check_tls_files(args.ssl_certfile, args.ssl_keyfile)
    settings = _settings()
    problems = settings.require_production()
    if problems:
        raise ConfigError(problems)
    if settings.redis_url is not None:
        redis_conn.check_url(settings.redis_url)
    configure_logging(settings.log_level, settings.log_format)
    return web_server.serve(
        settings,
        host=args.host,
        port=args.port,
        forwarded_allow_ips=args.forwarded_allow_ips,
        certfile=args.ssl_certfile,
        keyfile=args.ssl_keyfile,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    settings = _settings()
    if settings.redis_url is None:
        raise ConfigError("REACTOR_REDIS_URL: required to run a worker")
    if args.check:
        return check_worker(
            settings.redis_url, settings.redis_prefix, settings.redis_timeout_seconds
        )
    run_worker(settings, args.concurrency)
    return 0


def check_worker(url: str, prefix: str, timeout: float = 5.0) -> int:
    """``reactor worker --check``: 0 when a worker on this host (this container) beats.

    A probe: one try over the worker's own connection, one line. arq's queue-wide health key
    would answer for any replica, so a hung one would pass while another runs. The whole try
    is bounded by ``timeout`` (``REACTOR_REDIS_TIMEOUT_SECONDS``): arq's pool has no read
    timeout, and a stalled Redis (stopped, a silent partition) would hold the probe for ever.
    """
    import socket

    from redis.exceptions import RedisError

    from app import redis as redis_conn
    from app.dashboard.heartbeat import TTL_SECONDS

    host = socket.gethostname()
    try:
        alive = asyncio.run(asyncio.wait_for(_workers_on(url, prefix, host), timeout))
    except TimeoutError:
        where = redis_conn.display_url(url)
        print(f"reactor: redis: {where} did not answer within {timeout:g} s", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        where = redis_conn.display_url(url)
        print(f"reactor: redis: cannot reach {where} ({type(exc).__name__})", file=sys.stderr)
        return 1
    if not alive:
        print(
            f"reactor: worker: none on this host ({host}) has beaten in the last {TTL_SECONDS} s",
            file=sys.stderr,
        )
        return 1
    print(f"ok: worker {', '.join(str(info['id']) for info in alive)} beating")
    return 0


async def _workers_on(url: str, prefix: str, host: str) -> list[dict[str, object]]:
    from arq.connections import create_pool

    from app import redis as redis_conn
    from app.dashboard.heartbeat import Heartbeats

    redis_settings = redis_conn.arq_settings(url)
    redis_settings.conn_retries = 0
    pool = await create_pool(redis_settings)
    try:
        return await Heartbeats(pool, prefix).on_host(host)
    finally:
        await pool.aclose()


def cmd_dev(args: argparse.Namespace) -> int:
    from app import devstack

    return devstack.run(
        _settings(),
        args.port,
        sim_api_token=args.sim_api_token,
        forge=args.forge,
        host=args.host,
        activity=args.activity,
    )


def cmd_sim(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulator.cli import run

    return run(
        port=args.port,
        host=args.host,
        api_token=args.api_token,
        state=Path(args.state) if args.state else None,
        public_url=args.public_url,
        app_quota=args.app_quota,
        quota_beta=args.quota_beta,
        time_scale=args.time_scale,
        demo=args.demo,
        install_app=args.install_app,
        install_forge=(args.forge_app_id, args.install_forge) if args.install_forge else None,
        demo_activity=args.demo_activity,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )


def cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    # Only the key on stdout, so that REACTOR_SECRET_KEY=$(reactor keygen) works.
    print(
        "# a fresh REACTOR_SECRET_KEY; keep it secret (old keys may follow, comma separated)",
        file=sys.stderr,
    )
    print(Fernet.generate_key().decode())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from app.checks import run_checks
    from workers.loading import load_reactions

    settings = _settings()
    problems, facts = asyncio.run(run_checks(settings))
    # The reactions a worker would load (modules, rules file): refused there, so here too.
    if settings.reaction_modules or settings.rules_file is not None:
        try:
            reactions = load_reactions(settings)
        except ConfigError as exc:
            problems += exc.problems
        else:
            facts.append(f"reactions: {len(reactions)} load")
    for fact in facts:
        print(f"ok: {fact}")
    for problem in problems:
        print(f"problem: {problem}")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reactor", description="Confluence Reactor: page events in, safe reactions out."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    web = sub.add_parser("web", help="serve the web app (ingest, dashboard, health) under uvicorn")
    web.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server binds all interfaces
    web.add_argument("--port", type=port_number, default=8000)
    web.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="processes: 1 only (each would keep its own /metrics); scale with replicas",
    )
    web.add_argument("--ssl-certfile", default=None, help="serve TLS with this certificate")
    web.add_argument("--ssl-keyfile", default=None, help="private key of --ssl-certfile")
    web.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies trusted for X-Forwarded-Proto/For (comma separated, or *)",
    )
    web.set_defaults(handler=cmd_web)

    worker = sub.add_parser("worker", help="run an arq worker that reacts to queued events")
    worker.add_argument("--concurrency", type=positive_int, default=None)
    worker.add_argument(
        "--check",
        action="store_true",
        help="exit non-zero unless a worker on this host (container) sent its heartbeat lately",
    )
    worker.set_defaults(handler=cmd_worker)

    dev = sub.add_parser("dev", help="run everything locally: Redis, web, worker and simulator")
    dev.add_argument(
        "--port", type=port_or_zero, default=8000, help="web server port (0: any free port)"
    )
    dev.add_argument(
        "--host",
        default="127.0.0.1",
        help="web server address (default 127.0.0.1: this machine only; 0.0.0.0 exposes the "
        "dashboard to the network)",
    )
    dev.add_argument("--sim-api-token", default=None, help="API token of the simulator's user")
    dev.add_argument(
        "--forge",
        action="store_true",
        help="also deliver Forge events (simulator over https with a dev certificate)",
    )
    dev.add_argument(
        "--activity",
        type=activity_interval,
        default=30.0,
        metavar="SECONDS",
        help="a demo user edits, comments or labels a page once the app is installed, then "
        "every SECONDS (default 30; 0: never)",
    )
    dev.set_defaults(handler=cmd_dev)

    keygen = sub.add_parser("keygen", help="print a fresh REACTOR_SECRET_KEY value")
    keygen.set_defaults(handler=cmd_keygen)

    sim = sub.add_parser("sim", help="run the local Confluence simulator")
    sim.add_argument("--port", type=port_number, default=8090)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--api-token", default=None, help="API token of admin@example.com")
    sim.add_argument("--state", default=None, help="JSON file the site is loaded from and saved to")
    sim.add_argument("--public-url", default=None, help="origin used in links and tokens")
    sim.add_argument("--app-quota", type=positive_int, default=65_000, help="hourly points per app")
    sim.add_argument(
        "--quota-beta",
        action="store_true",
        help="the quota's pre-enforcement phase: beta headers, an exhausted quota refuses nothing",
    )
    sim.add_argument(
        "--time-scale", type=positive_float, default=1.0, help="simulated seconds per second"
    )
    sim.add_argument("--demo", action="store_true", help="create demo users, spaces and pages")
    sim.add_argument("--install-app", default=None, help="app descriptor URL to install")
    sim.add_argument(
        "--demo-activity",
        type=activity_interval,
        default=0.0,
        metavar="SECONDS",
        help="with --demo and --install-app: a demo user acts once the app is installed, then "
        "every SECONDS (default 0: never)",
    )
    sim.add_argument(
        "--install-forge",
        default=None,
        metavar="URL",
        help="install a Forge app whose events go to URL (with --install-app: the same app)",
    )
    sim.add_argument(
        "--forge-app-id",
        default="ari:cloud:ecosystem::app/confluence-reactor-dev",
        help="app id of --install-forge (the app's REACTOR_FORGE_APP_ID)",
    )
    sim.add_argument("--ssl-certfile", default=None, help="serve https (Forge apiBaseUrl is https)")
    sim.add_argument("--ssl-keyfile", default=None, help="private key of --ssl-certfile")
    sim.set_defaults(handler=cmd_sim)

    check = sub.add_parser("check", help="validate settings and Redis connectivity")
    check.set_defaults(handler=cmd_check)

    from app.pipeline_cli import register as register_pipeline

    register_pipeline(sub)

    from app.jwt_tools import register as register_jwt

    register_jwt(sub)

    from app.dashboard.cli import register as register_ops

    register_ops(sub)

    from app.reconcile_cli import register as register_reconcile

    register_reconcile(sub)
    return parser


def _check_operator_token(args: argparse.Namespace) -> None:
    """``--token`` of the ops API's commands: a value no header can carry is refused here
    (it would end in an encoding traceback, or be blamed on the network)."""
    token = getattr(args, "token", None) if args.command in ("status", "tenants") else None
    if token and not header_safe(token):
        raise ConfigError(f"--token: an operator token is {HEADER_SAFE_RULE}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    code = 0
    try:
        _check_operator_token(args)
        code = handler(args)
        sys.stdout.flush()  # a reader gone away shows here, not in the interpreter's exit
    except BrokenPipeError:
        # `reactor status | head -1`: the reader had what it wanted; not the command's fault
        from app.pipeline_cli import quiet_stdout

        quiet_stdout()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"reactor: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
