"""Redis connections built from the settings; the entry files own their lifetimes.

Every process builds its connection from the one ``REACTOR_REDIS_URL``: the web process and
the CLI through redis-py (:func:`connect`), the worker through arq (:func:`arq_settings`).
Both take the same query options of a ``redis://``/``rediss://``/``unix://`` URL
(:data:`URL_OPTIONS`, such as ``?ssl_ca_certs=/etc/ssl/redis-ca.pem``); one arq cannot pass
on is refused by both, so a URL never works in one process and not in another.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel

from app.errors import ConfigError

CONNECT_TIMEOUT_SECONDS = 2.0
# Query options every process honours: redis-py's name -> arq's RedisSettings field.
URL_OPTIONS = {
    "ssl_ca_certs": "ssl_ca_certs",
    "ssl_ca_data": "ssl_ca_data",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "ssl_cert_reqs": "ssl_cert_reqs",
    "ssl_check_hostname": "ssl_check_hostname",
    "socket_connect_timeout": "conn_timeout",
    "max_connections": "max_connections",
    "retry_on_timeout": "retry_on_timeout",
}
CERT_REQS = ("none", "optional", "required")
BOOLEAN_OPTIONS = ("ssl_check_hostname", "retry_on_timeout")
BOOLEANS = ("true", "false", "yes", "no", "1", "0")


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


def _check_sentinel_query(url: str) -> None:
    unknown = sorted(set(parse_qs(urlsplit(url).query)) - {"db"})
    if unknown:
        raise ConfigError(
            f"REACTOR_REDIS_URL: a sentinel URL takes no option but db, not {', '.join(unknown)}"
        )


def url_options(url: str) -> dict[str, Any]:
    """The connection ``url`` names, as redis-py's keyword arguments (``host``, ``db``,
    ``ssl_ca_certs``, ...); a :class:`ConfigError` for an option not every process can honour."""
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        raise ConfigError(f"REACTOR_REDIS_URL: {exc}") from None
    parts = urlsplit(url)
    raw = parse_qs(parts.query, keep_blank_values=True)
    query = set(raw)
    unknown = sorted(query - set(URL_OPTIONS) - {"db"})
    if unknown:
        raise ConfigError(
            f"REACTOR_REDIS_URL: option {', '.join(unknown)} is not supported "
            f"(supported: db, {', '.join(URL_OPTIONS)})"
        )
    twice = sorted(name for name, values in raw.items() if len(values) > 1)
    if twice:
        raise ConfigError(f"REACTOR_REDIS_URL: {', '.join(twice)} is given more than once")
    tls = sorted(name for name in query if name.startswith("ssl_"))
    if tls and not url.startswith("rediss://"):
        raise ConfigError(f"REACTOR_REDIS_URL: {', '.join(tls)} needs a rediss:// URL")
    _check_values(parts.scheme, parts.hostname, raw, options)
    return options


def _check_values(
    scheme: str, host: str | None, raw: dict[str, list[str]], options: dict[str, Any]
) -> None:
    """Values redis-py takes at parse time but no connection can use: refused at start, not
    at the first connection (a traceback, or a timeout read as an unreachable server)."""
    if scheme in ("redis", "rediss") and not host:
        # redis-py would quietly connect to localhost:6379
        raise ConfigError(f"REACTOR_REDIS_URL: a {scheme}:// URL must name a host")
    if scheme == "unix" and not options.get("path"):
        raise ConfigError("REACTOR_REDIS_URL: a unix:// URL must name the socket's path")
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs not in CERT_REQS:
        raise ConfigError(f"REACTOR_REDIS_URL: ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
    pool = options.get("max_connections")
    if pool is not None and pool < 1:
        raise ConfigError("REACTOR_REDIS_URL: max_connections must be a whole number of 1 or more")
    timeout = options.get("socket_connect_timeout")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(
            "REACTOR_REDIS_URL: socket_connect_timeout must be a number of seconds above 0"
        )
    for name in BOOLEAN_OPTIONS:
        if name in raw and raw[name][0].lower() not in BOOLEANS:
            raise ConfigError(f"REACTOR_REDIS_URL: {name} must be one of {', '.join(BOOLEANS)}")


def check_url(url: str) -> None:
    """A :class:`ConfigError` unless every process can connect as ``url`` says (at start)."""
    arq_settings(url)


def connect(url: str, **kwargs: Any) -> Redis:
    """A pooled asyncio Redis client for ``url`` (plain, TLS, unix socket or Sentinel)."""
    kwargs.setdefault("socket_connect_timeout", CONNECT_TIMEOUT_SECONDS)
    kwargs.setdefault("health_check_interval", 15)
    if url.startswith("redis+sentinel://"):
        _check_sentinel_query(url)
        hosts, service, db, password = _sentinel_parts(url)
        sentinel = Sentinel(hosts, password=password, socket_connect_timeout=2.0)  # type: ignore[no-untyped-call]
        client: Redis = sentinel.master_for(service, db=db, password=password, **kwargs)
        return client
    url_options(url)
    if url.startswith("rediss://"):
        kwargs.setdefault("ssl_check_hostname", False)  # arq's default, whatever redis-py's is
    plain: Redis = Redis.from_url(url, **kwargs)
    return plain


def arq_settings(url: str) -> RedisSettings:
    """arq's connection settings for ``url`` (Sentinel included): the same connection as
    :func:`connect`'s, TLS options and connect timeout included."""
    if url.startswith("redis+sentinel://"):
        _check_sentinel_query(url)
        hosts, service, db, password = _sentinel_parts(url)
        return RedisSettings(
            host=hosts,
            sentinel=True,
            sentinel_master=service,
            database=db,
            password=password,
        )
    options = url_options(url)
    fields: dict[str, Any] = {
        "host": options.get("host", "localhost"),
        "port": options.get("port", 6379),
        "unix_socket_path": options.get("path"),
        "database": options.get("db", 0),
        "username": options.get("username"),
        "password": options.get("password"),
        "ssl": url.startswith("rediss://"),
        "conn_timeout": CONNECT_TIMEOUT_SECONDS,
    }
    for name, field in URL_OPTIONS.items():
        if name in options:
            fields[field] = options[name]
    return RedisSettings(**fields)


def display_url(url: str) -> str:
    """``url`` without its password, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
