"""Connect authentication at the web edge: token, tenant, verification, rejection logs.

Thin glue around the pure verifiers in :mod:`app.atlassian`. Every rejection is logged with
its reason and the clientKey it claimed, never the token.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.requests import Request

from app.atlassian.connect_jwt import (
    ConnectClaims,
    DisabledTenant,
    UninstalledTenant,
    extract_token,
    parse_token,
    read_unverified_issuer,
    verify_connect_token,
)
from app.errors import InvalidPayload, PayloadTooLarge, UnsupportedMediaType, VerificationError
from app.settings import Settings
from app.tenants import Tenant, TenantStore

log = structlog.get_logger("app.connect")

# Authenticate whatever the method, so that no method answers anything but 401 without a token.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def request_target(request: Request) -> str:
    """The raw path and query as received: what the sender's ``qsh`` was computed over."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else request.scope["path"]
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def request_token(request: Request) -> str:
    return extract_token(
        request.headers.get("authorization"),
        request.scope.get("query_string", b"").decode("latin-1"),
    )


def log_rejection(request: Request, exc: VerificationError) -> None:
    log.info(
        "connect.rejected",
        reason=exc.code,
        client_key=exc.tenant,
        path=request.scope["path"],
        status=exc.status,
    )


async def authenticate(
    request: Request, *, allow_inactive: bool = False
) -> tuple[Tenant, ConnectClaims]:
    """Verify a tenant-signed (HS256) request; the tenant must be active unless allowed."""
    settings: Settings = request.app.state.settings
    tenants: TenantStore = request.app.state.tenants
    token = parse_token(request_token(request))
    issuer = read_unverified_issuer(token)
    tenant = await tenants.get(issuer)
    claims = verify_connect_token(
        token,
        secret_for=lambda iss: (
            tenant.shared_secret if tenant and iss == tenant.client_key else None
        ),
        method=request.method,
        url=request_target(request),
        base_url=settings.base_url,
        leeway=settings.jwt_leeway_seconds,
    )
    assert tenant is not None
    if not allow_inactive and tenant.status == "uninstalled":
        raise UninstalledTenant("the app is uninstalled on this site", tenant=tenant.client_key)
    if not allow_inactive and tenant.status == "disabled":
        raise DisabledTenant("the app is disabled on this site", tenant=tenant.client_key)
    return tenant, claims


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body, refusing non-JSON media types and bodies over ``limit`` bytes."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidPayload("the body is not valid JSON") from exc
