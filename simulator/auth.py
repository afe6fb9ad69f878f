"""Who is calling: Connect JWT, bearer tokens the simulator issued, or Basic email:API-token.

Confluence accepts, on the site URL, Basic auth with an API token and Connect JWTs (HS256 signed
with the tenant's shared secret, ``iss`` = app key, ``qsh`` of the request relative to the site's
``/wiki`` base); behind the gateway ``/ex/confluence/{cloudId}`` it accepts OAuth 2.0 bearer
tokens and Forge app tokens. Anything else is 401. Pure: no Starlette import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

from app.atlassian.connect_jwt import (
    TokenRejected,
    audiences,
    check_qsh,
    check_times,
    parse_token,
)
from simulator.store import Store

LEEWAY_SECONDS = 30


class Unauthorized(Exception):
    """No acceptable credentials; ``reason`` is for counters and logs, never echoed back."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller.

    ``mode`` is basic, connect, forge, oauth or actas; ``app`` the app key or Forge app id
    whose points quota the call spends (``None`` for API-token traffic, which only meets burst
    limits).
    """

    account_id: str
    mode: str
    app: str | None = None
    scopes: tuple[str, ...] | None = None  # Connect descriptor scopes; None: not scope-bound

    @property
    def caller(self) -> str:
        return f"{self.mode}:{self.app or self.account_id}"


def authenticate(
    store: Store,
    *,
    authorization: str | None,
    method: str,
    url: str,
    site_base_url: str,
    via_gateway: bool,
    now: float | None = None,
) -> Principal:
    """Resolve the caller or raise :class:`Unauthorized`."""
    if not authorization:
        raise Unauthorized("missing credentials")
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    moment = time.time() if now is None else now
    if scheme == "basic":
        return _basic(store, value)
    if scheme == "bearer":
        return _bearer(store, value, moment, via_gateway)
    if scheme == "jwt" and not via_gateway:
        return _connect(store, value, method=method, url=url, base=site_base_url, now=moment)
    raise Unauthorized(f"scheme {scheme!r} not accepted on this URL")


def _basic(store: Store, value: str) -> Principal:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed basic credentials") from None
    email, sep, token = decoded.partition(":")
    user = store.user_by_email(email) if sep else None
    if (
        user is None
        or not user.api_token
        or not hmac.compare_digest(
            hashlib.sha256(token.encode()).digest(),
            hashlib.sha256(user.api_token.encode()).digest(),
        )
    ):
        raise Unauthorized("bad email or API token")
    return Principal(user.account_id, "basic")


def _bearer(store: Store, value: str, now: float, via_gateway: bool) -> Principal:
    """OAuth (3LO) and Forge tokens work behind the gateway; act-as-user tokens on the site too."""
    token = store.tokens.get(hashlib.sha256(value.encode()).hexdigest())
    if token is None or token.expires_at <= now or token.account_id not in store.users:
        raise Unauthorized("unknown or expired bearer token")
    if not via_gateway and token.kind != "actas":
        raise Unauthorized("this bearer token is accepted through the gateway only")
    return Principal(token.account_id, token.kind, token.app_id or f"oauth:{token.account_id}")


def _connect(
    store: Store, value: str, *, method: str, url: str, base: str, now: float
) -> Principal:
    try:
        parsed = parse_token(value)
        if parsed.header.get("alg") != "HS256":
            raise Unauthorized("connect tokens must be HS256")
        issuer = parsed.claims.get("iss")
        app = store.connect_apps.get(issuer) if isinstance(issuer, str) else None
        if app is None or not app.enabled:
            raise Unauthorized("no installed app with this key")
        expected = hmac.new(
            app.shared_secret.encode(), parsed.signing_input, hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, parsed.signature):
            raise Unauthorized("bad signature")
        check_times(parsed.claims, now=int(now), leeway=LEEWAY_SECONDS)
        aud = audiences(parsed.claims)
        if aud is not None and not {app.client_key, app.key} & set(aud):
            raise Unauthorized("audience names another site")
        qsh = parsed.claims.get("qsh")
        if not isinstance(qsh, str):
            raise Unauthorized("qsh missing")
        check_qsh(qsh, method=method, url=url, base_url=base, allow_context=False)
    except TokenRejected as exc:
        raise Unauthorized(exc.code) from None
    return Principal(app.account_id, "connect", app.key, tuple(app.scopes))


CONNECT_SCOPES = ("NONE", "READ", "WRITE", "DELETE", "SPACE_ADMIN", "ADMIN")
SCOPE_FOR_METHOD = {
    "GET": "READ",
    "HEAD": "READ",
    "POST": "WRITE",
    "PUT": "WRITE",
    "DELETE": "DELETE",
}


def missing_scope(principal: Principal, method: str) -> str | None:
    """The Connect scope a call needs and the app lacks (each scope implies those before it)."""
    if principal.scopes is None:
        return None
    needed = SCOPE_FOR_METHOD.get(method.upper(), "ADMIN")
    granted = [CONNECT_SCOPES.index(s) for s in principal.scopes if s in CONNECT_SCOPES]
    if max(granted, default=0) >= CONNECT_SCOPES.index(needed):
        return None
    return needed


def token_key(raw: str) -> str:
    """Bearer tokens are stored by hash, so a saved state file holds no usable token."""
    return hashlib.sha256(raw.encode()).hexdigest()
