"""``reactor check``: settings, Redis reachability, version and persistence, one line each."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app import redis as redis_conn
from app.errors import ConfigError
from app.settings import Settings

MIN_REDIS = (6, 2)


async def run_checks(settings: Settings) -> tuple[list[str], list[str]]:
    """Return ``(problems, facts)``; never raises for expected failures."""
    problems = settings.require_production()
    facts: list[str] = []
    if settings.redis_url is None:
        return problems, facts
    try:
        client = redis_conn.connect(settings.redis_url, socket_timeout=2.0)
    except ConfigError as exc:
        return problems + exc.problems, facts
    try:
        info = await asyncio.wait_for(client.info(), timeout=3.0)
        fsync = await _appendfsync(client) if int(info.get("aof_enabled", 0)) == 1 else None
    except (RedisError, OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        problems.append(
            f"redis: cannot reach {redis_conn.display_url(settings.redis_url)} ({reason})"
        )
        return problems, facts
    finally:
        await client.aclose()
    version = str(info.get("redis_version", "0"))
    facts.append(f"redis {redis_conn.display_url(settings.redis_url)} answers, version {version}")
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


async def _appendfsync(client: Redis) -> str | None:
    """The server's ``appendfsync`` policy; None where CONFIG is not allowed (managed Redis)."""
    try:
        reply = await asyncio.wait_for(client.config_get("appendfsync"), timeout=3.0)
    except (RedisError, OSError, TimeoutError):
        return None
    value = reply.get("appendfsync") if isinstance(reply, dict) else None
    return value.decode() if isinstance(value, bytes) else value
