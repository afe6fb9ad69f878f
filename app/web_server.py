"""``reactor web``: the app under uvicorn in this one process, its TLS files checked first,
within the bounds of :mod:`app.http_protocol` and the ``REACTOR_WEB_*`` settings."""

from __future__ import annotations

import resource
import socket
import ssl
from typing import Any

import structlog
import uvicorn
import uvicorn.config
from cryptography import x509

from app.errors import ConfigError
from app.http_protocol import HttpLimits, bounded_protocol
from app.settings import Settings

STARTUP_FAILURE = 3  # uvicorn's exit status when it cannot start (a port in use, ...)


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, logging one line once it listens: its address and base URL."""

    def __init__(self, config: uvicorn.Config, address: str, base_url: str) -> None:
        super().__init__(config)
        self.address = address
        self.base_url = base_url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            structlog.get_logger("reactor.web").info(
                "web server listening", address=self.address, base_url=self.base_url
            )


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    forwarded_allow_ips: str,
    certfile: str | None,
    keyfile: str | None,
) -> int:
    """Serve until stopped; the exit status (0, or uvicorn's start-up failure)."""
    config = uvicorn_config(
        settings,
        host=host,
        port=port,
        forwarded_allow_ips=forwarded_allow_ips,
        certfile=certfile,
        keyfile=keyfile,
    )
    raise_open_file_limit()
    scheme = "https" if certfile else "http"
    server = AnnouncingServer(config, f"{scheme}://{host}:{port}", settings.base_url)
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def uvicorn_config(
    settings: Settings,
    *,
    host: str,
    port: int,
    forwarded_allow_ips: str,
    certfile: str | None = None,
    keyfile: str | None = None,
    app: Any = "app.main:factory",
) -> uvicorn.Config:
    """How ``reactor web`` runs uvicorn; ``app``: an ASGI app instead of the factory (tests)."""
    limits = HttpLimits(
        max_url_bytes=settings.web_max_url_bytes,
        max_header_bytes=settings.web_max_header_bytes,
        head_timeout=settings.web_header_timeout_seconds,
        body_timeout=settings.web_body_timeout_seconds,
        max_connections=settings.web_max_connections,
    )
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=host,
        port=port,
        loop="uvloop",
        http=bounded_protocol(limits),  # uvicorn's httptools protocol, within these limits
        limit_concurrency=settings.web_max_connections,  # 503 beyond, counting requests too
        log_level="warning",
        # JSON: uvicorn's loggers go to the root handler configure_logging set (one format)
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        server_header=False,
    )


def raise_open_file_limit() -> None:
    """The soft limit of open files up to the hard one, so that REACTOR_WEB_MAX_CONNECTIONS,
    not a container's default of 1024 descriptors, is what bounds connections."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # An unlimited hard limit: Linux's default ceiling (fs.nr_open); above it setrlimit fails.
        wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        pass  # left as it was: the limit is only raised where the system allows it


def check_tls_files(certfile: str | None, keyfile: str | None) -> None:
    """A :class:`ConfigError` (one line) unless TLS can be served with these files."""
    if keyfile is not None and certfile is None:
        raise ConfigError("--ssl-keyfile needs --ssl-certfile")
    if certfile is None:
        return
    pem = _read("--ssl-certfile", certfile)
    if keyfile is not None:
        _read("--ssl-keyfile", keyfile)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"--ssl-certfile: {certfile}: not a PEM certificate") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile, password=lambda: "")  # never prompts
    except ssl.SSLError:
        raise ConfigError(_key_problem(certfile, keyfile)) from None


def _key_problem(certfile: str, keyfile: str | None) -> str:
    if keyfile is None:
        return f"--ssl-certfile: {certfile}: holds no private key of its own; give --ssl-keyfile"
    return (
        f"--ssl-keyfile: {keyfile}: not the private key of --ssl-certfile "
        "(or an encrypted key, which is not supported)"
    )


def _read(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"{option}: {path}: {reason}") from None
