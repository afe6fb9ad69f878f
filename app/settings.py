"""Typed settings, read once from ``REACTOR_*`` environment variables (and an optional ``.env``).

Every process builds one :class:`Settings` in its entry file and passes it down; nothing else
reads the environment. :func:`load_settings` turns pydantic's validation errors into a
:class:`~app.errors.ConfigError` carrying one plain line per problem.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.atlassian.events import EVENT_TYPES
from app.errors import ConfigError

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
MIN_OPERATOR_TOKEN_LENGTH = 16
MAX_RETRY_DELAY = 7 * 24 * 3600.0
# Windows and retentions become Redis expiries (EX, EXPIRE, and sums of them kept in Lua's
# doubles); Redis refuses one past about 9.2e15 s, and every put failed. A year is far beyond
# any useful record, and outlasts the longest retry delay with its jitter (2 * 7 days).
MAX_RETENTION_SECONDS = 365 * 24 * 3600
DEFAULT_INSTALL_KEYS_URL = "https://connect-install-keys.atlassian.com"
DEFAULT_CONNECT_OAUTH_URL = "https://oauth-2-authorization-server.services.atlassian.com"
DEFAULT_FORGE_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"


def header_safe(token: str) -> bool:
    """True when ``token`` can travel as ``Authorization: Bearer <token>``: printable ASCII
    without spaces (header bytes are read as latin-1, so any other character never matches)."""
    return bool(token) and all("!" <= ch <= "~" for ch in token)


HEADER_SAFE_RULE = "printable ASCII without spaces (it travels in an HTTP header)"


def _check_http_url(value: str) -> None:
    """An absolute http(s) URL with a host, a port from 1 to 65535 when it names one, and no
    whitespace or control character; a ``ValueError`` naming what is wrong (never the URL)."""
    absolute = "must be an absolute http(s) URL such as https://reactor.example.com"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"{absolute}, without spaces")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"{absolute}; its host or port is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(absolute)
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")


def _check_fernet_key(value: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError("each key must be urlsafe base64 (run `reactor keygen`)") from exc
    if len(raw) != 32:
        raise ValueError("each key must decode to 32 bytes (run `reactor keygen`)")


def _check_sentinel(netloc: str, path: str, query: str) -> None:
    """``redis+sentinel://[:password@]host:port[,host:port]/service[/db]``, checked at start."""
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.partition(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(f"sentinel address {item!r} is not host:port")
    names = [p for p in path.split("/") if p]
    if not names:
        raise ValueError("a sentinel URL must name the service: .../mymaster")
    db = names[1] if len(names) > 1 else parse_qs(query).get("db", ["0"])[0]
    if len(names) > 2 or not db.isdigit():
        raise ValueError("a sentinel URL is .../service[/db] with a numeric database")


def _check_redis_options(url: str) -> None:
    """The query options and their values, as every process's connection will read them."""
    from app.redis import url_options  # imports redis-py and arq, which the settings need not

    try:
        url_options(url)
    except ConfigError as exc:
        raise ValueError(
            "; ".join(p.removeprefix("REACTOR_REDIS_URL: ") for p in exc.problems)
        ) from None


class Settings(BaseSettings):
    """All configuration of every Confluence Reactor process."""

    model_config = SettingsConfigDict(
        env_prefix="REACTOR_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,  # an endless timeout or rate is a typo, and Redis refuses them
    )

    redis_url: str | None = Field(
        default=None,
        description="redis://, rediss://, unix:// or redis+sentinel:// URL; unset means embedded "
        "(reactor dev only)",
    )
    redis_prefix: str = Field(default="reactor:", description="prefix of every key we write")
    base_url: str = Field(
        default="http://localhost:8000",
        description="public URL Atlassian calls (https in production)",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s), comma separated: encrypt with the first, decrypt with any",
    )
    dashboard_token: SecretStr | None = Field(
        default=None, description="operator sign-in token(s), comma separated"
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, GET /metrics asks for `Authorization: Bearer <this token>`",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    state_dir: Path = Field(default=Path(".reactor"), description="local state of `reactor dev`")

    app_key: str = Field(default="confluence-reactor", description="Connect app key")
    connect_install_keys_url: str = DEFAULT_INSTALL_KEYS_URL
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    connect_install_keys_timeout_seconds: float = Field(
        default=3.0, gt=0, le=30, description="longest wait for a signed-install public key"
    )
    connect_oauth_url: str = Field(
        default=DEFAULT_CONNECT_OAUTH_URL,
        description="authorization server of the Connect act-as-user (JWT bearer) grant",
    )
    tenant_cache_seconds: float = Field(
        default=10.0, ge=0, le=300, description="how long a decrypted tenant stays in memory"
    )
    forge_app_id: str = Field(default="", description="Forge app id (ari:cloud:ecosystem::app/...)")
    forge_jwks_url: str = DEFAULT_FORGE_JWKS_URL
    forge_allow_ic_labels: str = Field(
        default="", description="Isolated Cloud labels whose Forge tokens are accepted (comma list)"
    )
    forge_ic_jwks_url_template: str = Field(
        default="", description="JWKS URL of Isolated Cloud tokens, with {IC_LABEL} in it"
    )

    ingest_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    redis_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="the web process's longest wait for any Redis reply (dashboard, ops API, "
        "/metrics) before giving up on it with a 503",
    )
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    web_max_connections: int = Field(
        default=2000,
        ge=16,
        le=1_000_000,
        description="connections `reactor web` holds; beyond, new ones and new requests get 503",
    )
    web_max_url_bytes: int = Field(
        default=8 * 1024, ge=4096, le=1024 * 1024, description="longer request URLs get 414"
    )
    web_max_header_bytes: int = Field(
        default=64 * 1024,
        ge=8192,
        le=1024 * 1024,
        description="request headers beyond this (names, values, 128 per header) get 431",
    )
    web_header_timeout_seconds: float = Field(
        default=10.0, ge=1, le=300, description="longest wait for a request's line and headers"
    )
    web_body_timeout_seconds: float = Field(
        default=30.0, ge=1, le=3600, description="longest wait for a body after its headers"
    )
    dedupe_window_seconds: int = Field(default=24 * 3600, gt=0, le=MAX_RETENTION_SECONDS)
    worker_concurrency: int = Field(default=20, ge=1, le=1000)
    worker_poll_seconds: float = Field(
        default=0.01, gt=0, le=5, description="how often a worker looks for due jobs"
    )
    worker_metrics_port: int = Field(
        default=0, ge=0, le=65535, description="serve a worker's /metrics on this port (0: off)"
    )
    job_timeout_seconds: float = Field(
        default=300.0, gt=0, le=24 * 3600, description="longest run of one job"
    )
    shutdown_grace_seconds: int = Field(
        default=30, ge=0, description="on SIGTERM, how long in-flight jobs may finish"
    )
    retry_delays: str = Field(
        default="10,60,300,1800,7200",
        description="seconds before each retry, comma separated; one attempt more than delays",
    )
    retry_jitter: float = Field(default=0.2, ge=0, le=1, description="+/- fraction of each delay")
    event_retention_seconds: int = Field(
        default=3 * 24 * 3600,
        ge=60,
        le=MAX_RETENTION_SECONDS,
        description="how long event records stay after their last change",
    )
    dead_letter_retention_seconds: int = Field(
        default=14 * 24 * 3600,
        ge=60,
        le=MAX_RETENTION_SECONDS,
        description="how long dead-lettered events are kept",
    )
    uninstalled_retention_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=0,
        le=MAX_RETENTION_SECONDS,
        description="how long an uninstalled site's records are kept before they are deleted; "
        "0 = kept for ever",
    )
    supersede_types: str = Field(
        default="",
        description="event types whose queued older events of the same content are skipped "
        "when a newer one waits (comma separated; '*' for all)",
    )
    reactions: str = Field(default="", description="comma-separated reaction modules to load")
    rules_file: Path | None = None
    dry_run: bool = False
    app_account_id: str = Field(
        default="",
        description="the app's own account id(s), comma separated: their events are ignored",
    )
    loop_guard_limit: int = Field(
        default=5, ge=1, description="writes one reaction may make to one content per window"
    )
    loop_guard_window_seconds: int = Field(default=600, ge=1, description="loop guard window")

    budget_points_per_hour: int = Field(
        default=65_000, gt=0, description="the app's Confluence points quota per UTC hour"
    )
    budget_tenant_points_per_hour: int = Field(
        default=0, ge=0, description="per-tenant points quota per hour (Tier 2); 0 = none"
    )
    budget_reserve_fraction: float = Field(
        default=0.05, ge=0, le=0.3, description="quota share kept from each lower priority level"
    )
    budget_reserve_release_seconds: float = Field(
        default=300.0, ge=0, le=3600, description="the reserve shrinks to 0 over the hour's end"
    )
    budget_pacing: bool = Field(default=True, description="spread the hour's points evenly")
    budget_pacing_lead_seconds: float = Field(default=60.0, ge=0, le=3600)
    budget_burst_per_second: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        description="requests per second across all workers; 0 = no limit",
    )
    budget_backlog_window_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="fair shares between tenants; 0 = off"
    )
    budget_max_wait_seconds: float = Field(
        default=1.0, ge=0, le=30, description="wait in-process for budget up to this, then defer"
    )
    reconcile_interval_seconds: int = Field(
        default=300, ge=0, description="seconds between reconciliation sweeps of a tenant; 0 = off"
    )
    reconcile_overlap_seconds: float = Field(
        default=300.0, ge=0, le=86400, description="how far a sweep reaches before its watermark"
    )
    reconcile_max_items: int = Field(
        default=2000, ge=1, description="search hits one periodic sweep run reads before it pauses"
    )
    reconcile_trash_interval_seconds: int = Field(
        default=3600,
        ge=0,
        description="seconds between listings of a tenant's trash (costs 1 point per trashed "
        "page); 0 = off",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"scheme must be one of {', '.join(REDIS_SCHEMES)}, got {parts.scheme!r}"
            )
        if parts.scheme == "redis+sentinel":
            _check_sentinel(parts.netloc, parts.path, parts.query)
        else:
            try:
                parts.port  # noqa: B018 - urllib checks the port when it is read
            except ValueError:
                raise ValueError("the port must be a number from 0 to 65535") from None
            database = parts.path.lstrip("/") if parts.scheme != "unix" else ""
            databases = [database] if database else []
            databases += parse_qs(parts.query).get("db", [])
            if any(not d.isascii() or not d.isdigit() for d in databases):
                raise ValueError("the database must be a number (redis://host:6379/0)")
            _check_redis_options(value)
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        _check_http_url(value)
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("connect_install_keys_url", "connect_oauth_url", "forge_jwks_url")
    @classmethod
    def _service_url(cls, value: str) -> str:
        """Atlassian's key servers and authorization server: a malformed one would show only
        at run time, as a server that cannot be reached."""
        _check_http_url(value)
        return value

    @field_validator("dashboard_token")
    @classmethod
    def _dashboard_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for token in value.get_secret_value().split(","):
            if token.strip() and len(token.strip()) < MIN_OPERATOR_TOKEN_LENGTH:
                # Sign-in throttles wrong tokens but never refuses a right one (no lock-out):
                # the token's length is what stops guessing.
                raise ValueError(
                    f"each operator token must be at least {MIN_OPERATOR_TOKEN_LENGTH} "
                    "characters; make one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
            if token.strip() and not header_safe(token.strip()):
                raise ValueError(f"each operator token must be {HEADER_SAFE_RULE}")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        token = value.get_secret_value().strip()
        if len(token) < MIN_OPERATOR_TOKEN_LENGTH:
            raise ValueError(
                f"the metrics token must be at least {MIN_OPERATOR_TOKEN_LENGTH} characters"
            )
        if not header_safe(token):
            raise ValueError(f"the metrics token must be {HEADER_SAFE_RULE}")
        return SecretStr(token)

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        for key in value.get_secret_value().split(","):
            _check_fernet_key(key.strip())
        return value

    @field_validator("retry_delays")
    @classmethod
    def _retry_delays(cls, value: str) -> str:
        try:
            delays = [float(d) for d in value.split(",") if d.strip()]
        except ValueError as exc:
            raise ValueError("must be comma-separated numbers of seconds, e.g. 10,60,300") from exc
        if any(not math.isfinite(d) or d < 0 or d > MAX_RETRY_DELAY for d in delays):
            raise ValueError(f"each delay must be from 0 to {MAX_RETRY_DELAY:.0f} seconds")
        return value

    @field_validator("event_retention_seconds")
    @classmethod
    def _retention_outlasts_retries(cls, value: int, info: ValidationInfo) -> int:
        """A retry due after its record expired would find nothing to run."""
        delays = info.data.get("retry_delays")
        jitter = info.data.get("retry_jitter")
        if isinstance(delays, str) and isinstance(jitter, float):
            longest = max((float(d) for d in delays.split(",") if d.strip()), default=0.0)
            if longest * (1 + jitter) >= value:
                raise ValueError(
                    f"must outlast the longest retry delay with its jitter "
                    f"({longest * (1 + jitter):.0f} s of REACTOR_RETRY_DELAYS)"
                )
        return value

    @property
    def retry_schedule(self) -> list[float]:
        """Seconds to wait before retry 1, 2, ...; an event gets ``len + 1`` attempts."""
        return [float(d) for d in self.retry_delays.split(",") if d.strip()]

    @property
    def supersede_event_types(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.supersede_types.split(",") if t.strip())

    @field_validator("supersede_types")
    @classmethod
    def _supersede(cls, value: str) -> str:
        unknown = sorted({t.strip() for t in value.split(",") if t.strip()} - {*EVENT_TYPES, "*"})
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown)}; use {', '.join(EVENT_TYPES)} or *"
            )
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(ch.isspace() for ch in value):
            raise ValueError("must be a non-empty string without spaces")
        return value

    @property
    def secret_keys(self) -> list[str]:
        """The configured Fernet keys, first one used for encryption."""
        if self.secret_key is None:
            return []
        return [k.strip() for k in self.secret_key.get_secret_value().split(",") if k.strip()]

    @property
    def dashboard_tokens(self) -> list[str]:
        if self.dashboard_token is None:
            return []
        raw = self.dashboard_token.get_secret_value()
        return [t.strip() for t in raw.split(",") if t.strip()]

    @property
    def reaction_modules(self) -> list[str]:
        return [m.strip() for m in self.reactions.split(",") if m.strip()]

    @property
    def app_account_ids(self) -> list[str]:
        return [a.strip() for a in self.app_account_id.split(",") if a.strip()]

    @property
    def forge_ic_labels(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.forge_allow_ic_labels.split(",") if x.strip())

    @field_validator("forge_allow_ic_labels")
    @classmethod
    def _ic_labels(cls, value: str) -> str:
        for label in (x.strip() for x in value.split(",") if x.strip()):
            if not re.fullmatch(r"[a-z0-9_-]{1,50}", label):
                raise ValueError(f"{label!r} is not an Isolated Cloud label ([a-z0-9_-]{{1,50}})")
        return value

    @field_validator("forge_ic_jwks_url_template")
    @classmethod
    def _ic_template(cls, value: str) -> str:
        if value and ("{IC_LABEL}" not in value or urlsplit(value).scheme != "https"):
            raise ValueError("must be an https URL containing {IC_LABEL}")
        return value

    def require_production(self) -> list[str]:
        """Problems that forbid running outside ``reactor dev``, one line each."""
        problems = []
        if self.redis_url is None:
            problems.append(
                "REACTOR_REDIS_URL: required (embedded Redis exists in `reactor dev` only)"
            )
        if not self.secret_keys:
            problems.append(
                "REACTOR_SECRET_KEY: required to encrypt tenant secrets (`reactor keygen`)"
            )
        return problems


def load_settings(**overrides: object) -> Settings:
    """Build the settings or raise :class:`ConfigError` with one line per problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"REACTOR_{field.upper()}: {message}")
        raise ConfigError(lines) from None
