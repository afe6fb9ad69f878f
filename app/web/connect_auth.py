"""Connect authentication at the web edge: token, tenant, verification, rejection logs.

Thin glue around the pure verifiers in :mod:`app.atlassian`. Every rejection is logged with
its reason and the clientKey it claimed, never the token.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import Scope

from app.atlassian.connect_jwt import (
    BadSignature,
    ConnectClaims,
    DisabledTenant,
    UninstalledTenant,
    extract_token,
    parse_token,
    read_unverified_issuer,
    verify_connect_token,
)
from app.atlassian.install_token import WrongAudience
from app.atlassian.verified_tokens import VerifiedTokens
from app.errors import VerificationError
from app.ingest import check_media_type, parse_json, read_body
from app.settings import Settings
from app.tenants import Tenant, TenantStore

log = structlog.get_logger("app.connect")

LIFECYCLE_PATHS = frozenset(
    f"/connect/{event}" for event in ("installed", "uninstalled", "enabled", "disabled")
)
# Authenticate whatever the method, so that no method answers anything but 401 without a token.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def raw_target(scope: Scope) -> str:
    """The raw path and query as received: what the sender's ``qsh`` was computed over."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def request_target(request: Request) -> str:
    return raw_target(request.scope)


def request_token(request: Request) -> str:
    return extract_token(
        request.headers.get("authorization"),
        request.scope.get("query_string", b"").decode("latin-1"),
    )


def log_rejection(request: Request | Scope, exc: VerificationError) -> None:
    """One line per refusal. A refused lifecycle callback (a site that cannot install) is a
    warning; a wrong audience names the ``aud`` received and ``REACTOR_BASE_URL`` (the usual
    cause: a base URL that differs between replicas, or changed since the descriptor was read).
    """
    scope = request.scope if isinstance(request, Request) else request
    path = scope["path"]
    # The client key and audience of a refused token are the sender's claims, unverified: a
    # line per refusal must not carry kilobytes of them.
    fields: dict[str, Any] = {
        "reason": exc.code,
        "client_key": clipped(exc.tenant),
        "path": clipped(path),
        "status": exc.status,
    }
    if isinstance(exc, WrongAudience):
        fields["aud"] = clipped(exc.received)
        settings = _app_settings(scope)
        if settings is not None:
            fields["base_url"] = settings.base_url
    if path.removeprefix(scope.get("root_path", "")) in LIFECYCLE_PATHS:
        log.warning("connect.rejected", **fields)
    else:
        log.info("connect.rejected", **fields)


# Characters of an unverified value a log line keeps (a clientKey is a 36-character UUID).
LOGGED_CLAIM_CHARS = 200


def clipped(value: Any) -> Any:
    """A value from an unverified request, cut for a log line (``…`` and its full length)."""
    if isinstance(value, str) and len(value) > LOGGED_CLAIM_CHARS:
        return f"{value[:LOGGED_CLAIM_CHARS]}… ({len(value)} characters)"
    return value


def _app_settings(scope: Scope) -> Settings | None:
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    return settings if isinstance(settings, Settings) else None


async def verify_request(
    settings: Settings,
    tenants: TenantStore,
    *,
    token: str,
    method: str,
    target: str,
    allow_inactive: bool = False,
) -> tuple[Tenant, ConnectClaims]:
    """Verify a tenant-signed (HS256) token for ``method`` on the raw ``target``.

    The token is decoded once; the tenant (and its secret) comes from the store's in-memory
    cache. Signature, ``exp``/``iat``, ``qsh`` and then the tenant's status are all checked.
    """
    parsed = parse_token(token)
    issuer = read_unverified_issuer(parsed)
    tenant = await tenants.get(issuer)

    def verify(tenant: Tenant | None) -> ConnectClaims:
        return verify_connect_token(
            parsed,
            secret_for=lambda iss: _secret(tenant, iss),
            method=method,
            url=target,
            base_url=settings.base_url,
            leeway=settings.jwt_leeway_seconds,
        )

    try:
        claims = verify(tenant)
    except (BadSignature, UninstalledTenant):
        # The secret may have been rotated (or brought back) by a reinstall another process
        # took in: read the tenant again (at most five times a second per tenant) before
        # refusing.
        fresher = await tenants.reread(issuer)
        if fresher is None or tenant is None or fresher.shared_secret == tenant.shared_secret:
            raise
        tenant = fresher
        claims = verify(tenant)
    assert tenant is not None
    return _active(tenant, allow_inactive), claims


def _secret(tenant: Tenant | None, issuer: str) -> str | None:
    """The shared secret for ``issuer``; an uninstalled tenant keeps none (refused as such)."""
    if tenant is None or issuer != tenant.client_key:
        return None
    if not tenant.shared_secret:
        raise UninstalledTenant("the app is uninstalled on this site", tenant=tenant.client_key)
    return tenant.shared_secret


async def verify_webhook(
    settings: Settings,
    tenants: TenantStore,
    verified: VerifiedTokens,
    *,
    token: str,
    method: str,
    target: str,
) -> Tenant:
    """:func:`verify_request` for a webhook, which needs only its (active) tenant.

    A token already verified for this target is taken from ``verified``: its time window and
    the tenant's current secret and status are checked again. One verified in full is added
    once the tenant's status let it in, so a refused request never takes a place there.
    """
    issuer = verified.issuer(token, method, target)
    if issuer is not None:
        tenant = await tenants.get(issuer)
        if tenant is not None and verified.holds(
            token,
            method,
            target,
            secret=tenant.shared_secret,
            now=int(time.time()),
            leeway=settings.jwt_leeway_seconds,
        ):
            return _active(tenant, False)
    tenant, claims = await verify_request(
        settings, tenants, token=token, method=method, target=target
    )
    verified.remember(token, method, target, secret=tenant.shared_secret, claims=claims)
    return tenant


def _active(tenant: Tenant, allow_inactive: bool) -> Tenant:
    """``tenant`` if its status lets it in (or ``allow_inactive``), else the refusal."""
    if not allow_inactive and tenant.status == "uninstalled":
        raise UninstalledTenant("the app is uninstalled on this site", tenant=tenant.client_key)
    if not allow_inactive and tenant.status == "disabled":
        raise DisabledTenant("the app is disabled on this site", tenant=tenant.client_key)
    return tenant


async def authenticate(
    request: Request, *, allow_inactive: bool = False
) -> tuple[Tenant, ConnectClaims]:
    """Verify a tenant-signed (HS256) request; the tenant must be active unless allowed."""
    return await verify_request(
        request.app.state.settings,
        request.app.state.tenants,
        token=request_token(request),
        method=request.method,
        target=request_target(request),
        allow_inactive=allow_inactive,
    )


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body, refusing non-JSON media types and bodies over ``limit`` bytes.

    A request without a content type is taken as JSON (lifecycle callbacks).
    """
    check_media_type(request.headers.get("content-type", "application/json"))
    return parse_json(await read_body(request, limit))
