"""``reactor check``: settings, Redis reachability, version and persistence, one line each."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app import redis as redis_conn
from app.errors import ConfigError, UpstreamUnavailable
from app.settings import Settings
from app.tenants import TenantStore

MIN_REDIS = (6, 2)
# Keys ``reactor check`` looks through, at most, for another deployment's pipeline.
MAX_KEYS_SCANNED = 5000
SCAN_COUNT = 1000
# Keys ending in "events" whose type and first member are looked at, at most.
MAX_CANDIDATES = 100
# Prefixes of other pipelines named in the problem, at most.
MAX_PREFIXES_NAMED = 3
# Tenants whose stored secret ``reactor check`` tries to decrypt, at most.
MAX_SECRETS_TRIED = 20
# REACTOR_ variables the project reads outside the settings (tests, the simulator's token).
OTHER_VARIABLES = frozenset(
    {"REACTOR_TEST_REDIS_URL", "REACTOR_SIM_API_TOKEN", "REACTOR_FUZZ_EXAMPLES"}
)
# What Kubernetes defines for a Service named "reactor" or "reactor-<anything>" (service
# links: REACTOR_WEB_SERVICE_HOST, REACTOR_WEB_PORT_8000_TCP_ADDR...), not settings. A bare
# ``..._PORT`` is one only when its value is an address (tcp://10.0.0.7:8000).
SERVICE_LINK = re.compile(
    r"REACTOR_(\w+_)?(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)\w*)"
)
SERVICE_LINK_PORT = re.compile(r"REACTOR_(\w+_)?PORT")
SERVICE_ADDRESS = re.compile(r"(tcp|udp|sctp)://", re.IGNORECASE)
ENV_FILE_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
# scheme://user:password@ in a message: the password is masked before it is printed
URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@", re.IGNORECASE)


async def run_checks(settings: Settings) -> tuple[list[str], list[str]]:
    """Return ``(problems, facts)``; never raises for expected failures."""
    problems = settings.require_production()
    problems += public_problems(settings)
    problems += unknown_variables(os.environ, env_file_names(settings))
    facts: list[str] = []
    if settings.redis_url is None:
        return problems, facts
    try:
        client = redis_conn.connect(settings.redis_url, socket_timeout=2.0)
    except ConfigError as exc:
        return problems + exc.problems, facts
    try:
        found, facts = await _redis_checks(client, settings.redis_url)
        if facts:  # Redis answered
            found += await _shared_database_problems(client, settings.redis_prefix)
        if facts and settings.secret_keys:
            found += await _secret_key_problems(client, settings)
    finally:
        await client.aclose()
    return problems + found, facts


def public_problems(settings: Settings) -> list[str]:
    """What stops Atlassian installing or an operator signing in (``reactor dev`` never asks).

    The base URL is the descriptor's ``baseUrl`` and the JWT audience: Atlassian needs a public
    https URL it can reach.
    """
    problems = []
    url = redis_conn.display_url(settings.base_url)
    parts = urlsplit(settings.base_url)
    if "base_url" not in settings.model_fields_set:
        problems.append(
            f"REACTOR_BASE_URL: unset (default {url}); set the public https URL Atlassian "
            "calls (the descriptor's baseUrl and the JWT audience)"
        )
    else:
        if parts.scheme != "https":
            problems.append(
                f"REACTOR_BASE_URL: {url} is not https; Atlassian installs and calls only "
                "a public https URL"
            )
        if _is_this_machine(parts.hostname or ""):
            problems.append(
                f"REACTOR_BASE_URL: {url} names this machine ({parts.hostname}); "
                "Atlassian cannot reach it"
            )
    if not settings.dashboard_tokens:
        problems.append(
            "REACTOR_DASHBOARD_TOKEN: unset; the dashboard, the ops API, reactor status and "
            "reactor tenants need an operator token"
        )
    return problems


def _is_this_machine(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def env_file_names(settings: Settings) -> list[str]:
    """The variable names of the ``.env`` file the settings read (none when it is absent)."""
    name = settings.model_config.get("env_file")
    if not isinstance(name, str | Path):
        return []
    try:
        text = Path(name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [m.group(1) for m in map(ENV_FILE_LINE.match, text.splitlines()) if m]


def unknown_variables(environ: Mapping[str, str], env_file: Iterable[str] = ()) -> list[str]:
    """A problem for each ``REACTOR_`` variable no setting reads (a misspelling is ignored)."""
    known = {f"REACTOR_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    problems = []
    for where, names in (("environment", list(environ)), (".env", list(env_file))):
        for name in sorted({n.upper() for n in names if n.upper().startswith("REACTOR_")}):
            if name in known or _service_link(name, environ.get(name, "")):
                continue
            near = get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            problems.append(f"{name} (in the {where}): not a setting, ignored{hint}")
    return problems


def _service_link(name: str, value: str) -> bool:
    if SERVICE_LINK.fullmatch(name):
        return True
    return bool(SERVICE_LINK_PORT.fullmatch(name) and SERVICE_ADDRESS.match(value))


def redis_reason(exc: BaseException, url: str) -> str:
    """Why Redis failed, from redis-py's message (host and port), with any password masked."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    message = URL_CREDENTIALS.sub(r"\1***@", str(exc).strip())
    password = urlsplit(url).password if "://" in url else None
    if password:
        message = message.replace(password, "***")
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


async def _redis_checks(client: Redis, url: str) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    facts: list[str] = []
    where = redis_conn.display_url(url)
    try:
        info = await asyncio.wait_for(client.info(), timeout=3.0)
        fsync = await _appendfsync(client) if int(info.get("aof_enabled", 0)) == 1 else None
    except (RedisError, OSError, TimeoutError) as exc:
        problems.append(
            f"redis: cannot reach {where} (REACTOR_REDIS_URL): {redis_reason(exc, url)}"
        )
        return problems, facts
    version = str(info.get("redis_version", "0"))
    facts.append(f"redis {where} answers, version {version}")
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < MIN_REDIS:
        problems.append(f"redis: version {version} is older than {'.'.join(map(str, MIN_REDIS))}")
    if int(info.get("aof_enabled", 0)) == 1:
        facts.append("redis persistence: append-only file")
        if fsync == "no":
            problems.append(
                "redis persistence: appendfsync is 'no' (the OS decides when to write); "
                "acknowledged events may be lost on a crash (set appendfsync everysec)"
            )
        elif fsync is not None:
            facts.append(f"redis persistence: appendfsync {fsync}")
    else:
        problems.append(
            "redis persistence: append-only file is off; acknowledged events may be lost on a "
            "crash (set appendonly yes, appendfsync everysec)"
        )
    return problems, facts


async def _shared_database_problems(client: Redis, prefix: str) -> list[str]:
    """A problem when the database holds the events index of a pipeline under another prefix.

    The prefix does not separate deployments: arq's keys (``arq:job:<event id>``,
    ``arq:in-progress:<event id>``) carry none and an event's id does not depend on it, so two
    deployments that receive the same site's changes act on each other's jobs. The index
    (``<prefix>events``, a ZSET of event ids) outlives an empty queue, so it is what is looked
    for, in the first :data:`MAX_KEYS_SCANNED` keys or so. Where SCAN is refused or slow,
    nothing is said.
    """
    try:
        others = await asyncio.wait_for(_other_prefixes(client, prefix), timeout=3.0)
    except (RedisError, OSError, TimeoutError):
        return []
    if not others:
        return []
    named = ", ".join(repr(p) for p in others[:MAX_PREFIXES_NAMED])
    more = (
        f" and {len(others) - MAX_PREFIXES_NAMED} more" if len(others) > MAX_PREFIXES_NAMED else ""
    )
    return [
        f"redis: the database also holds the events of another prefix ({named}{more}; ours is "
        f"{prefix!r}): another deployment, or an earlier prefix of this one. The prefix does "
        "not separate deployments (arq's keys, arq:job:<event id>, carry none): give each its "
        "own database number (REACTOR_REDIS_URL .../<db>) or server"
    ]


async def _other_prefixes(client: Redis, prefix: str) -> list[str]:
    found: set[str] = set()
    cursor: int = 0
    scanned = candidates = 0
    while True:
        cursor, keys = await client.scan(cursor, match="*events", count=SCAN_COUNT)
        scanned += SCAN_COUNT
        for raw in keys:
            other = _text(raw).removesuffix("events")
            if other == prefix or other in found or candidates >= MAX_CANDIDATES:
                continue
            candidates += 1
            if await _is_events_index(client, f"{other}events"):
                found.add(other)
        if cursor == 0 or scanned >= MAX_KEYS_SCANNED or candidates >= MAX_CANDIDATES:
            return sorted(found)


async def _is_events_index(client: Redis, key: str) -> bool:
    """A ZSET whose first member is an event id (``ev_...``), as the pipeline keeps it."""
    if _text(await client.type(key)) != "zset":
        return False
    first = await client.zrange(key, 0, 0)
    return bool(first) and _text(first[0]).startswith("ev_")


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def _secret_key_problems(client: Redis, settings: Settings) -> list[str]:
    """A problem when REACTOR_SECRET_KEY decrypts none of the stored tenant secrets tried.

    Every job of such a tenant fails (``tenant_secret_unreadable``) until it is dead-lettered.
    No tenant stored, or none with a secret (all uninstalled): nothing to say.
    """
    store = TenantStore(client, settings, cache_seconds=0)
    try:
        readable, unreadable = await _try_secrets(store)
    except (RedisError, OSError, TimeoutError, UpstreamUnavailable) as exc:
        reason = redis_reason(exc, settings.redis_url or "")
        return [f"redis: cannot read the tenants (REACTOR_REDIS_URL): {reason}"]
    if readable or not unreadable:
        return []
    return [
        f"REACTOR_SECRET_KEY: matches none of the {unreadable} stored tenant secrets tried; "
        "their jobs would fail (tenant_secret_unreadable): keep the key they were sealed with "
        "in the list (comma separated, after the new one)"
    ]


async def _try_secrets(store: TenantStore) -> tuple[bool, int]:
    """Whether a stored tenant secret decrypts (stopping at the first), and how many did not."""
    members = await asyncio.wait_for(_members(store), timeout=3.0)
    unreadable = 0
    for client_key in sorted(members):
        if unreadable >= MAX_SECRETS_TRIED:
            break
        try:
            tenant = await store.get(client_key)
        except UpstreamUnavailable as exc:
            if exc.code != "tenant_secret_unreadable":
                raise
            unreadable += 1
            continue
        if tenant is not None and tenant.shared_secret:
            return True, unreadable
        # else uninstalled: its secret went with it, nothing to try
    return False, unreadable


async def _members(store: TenantStore) -> list[str]:
    raw = await store.redis.smembers(store.keys.index)  # type: ignore[misc]
    return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]


async def _appendfsync(client: Redis) -> str | None:
    """The server's ``appendfsync`` policy; None where CONFIG is not allowed (managed Redis)."""
    try:
        reply = await asyncio.wait_for(client.config_get("appendfsync"), timeout=3.0)
    except (RedisError, OSError, TimeoutError):
        return None
    value = reply.get("appendfsync") if isinstance(reply, dict) else None
    return value.decode() if isinstance(value, bytes) else value
