"""Redis connections built from the settings; the entry files own their lifetimes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from app.errors import ConfigError


def _sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """Parse ``redis+sentinel://[:password@]host:port[,host:port]/service[/db]``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    password = parts.password
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.partition(":")
        hosts.append((host, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError("REACTOR_REDIS_URL: a sentinel URL must name the service: .../mymaster")
    service = path[0]
    db = int(path[1]) if len(path) > 1 else int(parse_qs(parts.query).get("db", ["0"])[0])
    return hosts, service, db, password


def connect(url: str, **kwargs: Any) -> Redis:
    """A pooled asyncio Redis client for ``url`` (plain, TLS, unix socket or Sentinel)."""
    kwargs.setdefault("socket_connect_timeout", 2.0)
    kwargs.setdefault("health_check_interval", 15)
    if url.startswith("redis+sentinel://"):
        hosts, service, db, password = _sentinel_parts(url)
        sentinel = Sentinel(hosts, password=password, socket_connect_timeout=2.0)  # type: ignore[no-untyped-call]
        client: Redis = sentinel.master_for(service, db=db, password=password, **kwargs)
        return client
    plain: Redis = Redis.from_url(url, **kwargs)
    return plain


def arq_settings(url: str) -> RedisSettings:
    """arq's connection settings for ``url`` (Sentinel included)."""
    if url.startswith("redis+sentinel://"):
        hosts, service, db, password = _sentinel_parts(url)
        return RedisSettings(
            host=hosts,
            sentinel=True,
            sentinel_master=service,
            database=db,
            password=password,
        )
    return RedisSettings.from_dsn(url)


def display_url(url: str) -> str:
    """``url`` without its password, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
