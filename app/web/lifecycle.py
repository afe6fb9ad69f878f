"""Connect lifecycle callbacks: installed, uninstalled, enabled, disabled.

``installed`` and ``uninstalled`` must carry an RS256 signed-install token (Atlassian's key,
fetched by ``kid``); ``enabled`` and ``disabled`` accept that or an HS256 token signed with
the tenant's shared secret. Every route authenticates before anything else, whatever the
method, so an unauthenticated request always gets 401.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.atlassian.connect_jwt import ConnectClaims, UninstalledTenant, parse_token
from app.atlassian.install_token import (
    IssuerMismatch,
    LifecyclePayload,
    TokenReused,
    check_install_claims,
    parse_lifecycle_payload,
    read_install_key_id,
    verify_install_token,
)
from app.budget.redis_budget import RedisBudget
from app.errors import IngestError, InvalidPayload, VerificationError
from app.install_keys import InstallKeys
from app.reconcile_state import ReconcileState
from app.settings import Settings
from app.tenants import Status, Tenant, TenantStore
from app.web.connect_auth import (
    ANY_METHOD,
    authenticate,
    clipped,
    log_rejection,
    read_json,
    request_target,
    request_token,
)
from app.web.responses import error_response

log = structlog.get_logger("app.connect")


async def _signed_install(
    request: Request, token: str, *, require_secret: bool
) -> tuple[LifecyclePayload, ConnectClaims]:
    """Authenticate first, then validate the body: a forged call never gets past a 401."""
    settings: Settings = request.app.state.settings
    keys: InstallKeys = request.app.state.install_keys
    kid = read_install_key_id(token)
    body: Any = None
    body_error: IngestError | None = None
    try:
        body = await read_json(request, settings.max_body_bytes)
    except IngestError as exc:
        body_error = exc
    claimed = body.get("clientKey") if isinstance(body, dict) else None
    checks: dict[str, Any] = {
        "method": request.method,
        "url": request_target(request),
        "app_base_url": settings.base_url,
        "client_key": claimed if isinstance(claimed, str) else "",
        "leeway": settings.jwt_leeway_seconds,
    }
    check_install_claims(parse_token(token).claims, **checks)  # before any key is fetched
    public_key = await keys.get(kid)
    claims = verify_install_token(token, public_key=public_key, **checks)
    if body_error is not None:
        raise body_error
    payload = parse_lifecycle_payload(body, require_secret=require_secret)
    tenants: TenantStore = request.app.state.tenants
    bound = await tenants.bind_lifecycle_token(
        _digest(token.encode()),
        _digest(_canonical(body)),
        expires_at=claims.expires_at + settings.jwt_leeway_seconds,
    )
    if not bound:
        raise TokenReused("this token was used before with another body", tenant=payload.client_key)
    return payload, claims


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(body: Any) -> bytes:
    """The body's JSON with sorted keys: the same callback retried gives the same bytes."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _check_app_key(payload: LifecyclePayload, settings: Settings) -> None:
    if payload.key is not None and payload.key != settings.app_key:
        raise InvalidPayload("the callback is for another app key")


def _method_not_allowed() -> Response:
    return error_response(405, "method_not_allowed", "lifecycle callbacks are POST only")


async def installed(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    tenants: TenantStore = request.app.state.tenants
    try:
        payload, claims = await _signed_install(
            request, request_token(request), require_secret=True
        )
    except VerificationError as exc:
        log_rejection(request, exc)
        raise
    if request.method != "POST":
        return _method_not_allowed()
    _check_app_key(payload, settings)
    assert payload.shared_secret is not None
    tenant = await tenants.upsert(
        Tenant(
            client_key=payload.client_key,
            shared_secret=payload.shared_secret,
            base_url=payload.base_url,
            display_url=payload.display_url,
            product_type=payload.product_type,
            oauth_client_id=payload.oauth_client_id,
            installation_id=payload.installation_id,
        ),
        issued_at=claims.issued_at,
    )
    if tenant is None:
        return _stale("installed", payload.client_key, claims)
    budget = RedisBudget(request.app.state.redis, settings)
    for retired in await tenants.retire_others(tenant):
        await budget.forget_waiting(retired)
        log.warning(
            "connect.replaced", client_key=retired, by=tenant.client_key, base_url=tenant.base_url
        )
    log.info(
        "connect.installed",
        client_key=tenant.client_key,
        base_url=tenant.base_url,
        status=tenant.status,
    )
    return Response(status_code=204)


def _stale(callback: str, client_key: str, claims: ConnectClaims) -> Response:
    """A callback signed before the last one applied (a late retry or a replay): changes
    nothing, and is acknowledged so that it is not sent again."""
    log.warning(
        f"connect.{callback}.stale_ignored", client_key=client_key, issued_at=claims.issued_at
    )
    return Response(status_code=204)


async def uninstalled(request: Request) -> Response:
    tenants: TenantStore = request.app.state.tenants
    try:
        payload, claims = await _signed_install(
            request, request_token(request), require_secret=False
        )
    except VerificationError as exc:
        log_rejection(request, exc)
        raise
    if request.method != "POST":
        return _method_not_allowed()
    _check_app_key(payload, request.app.state.settings)
    known = await tenants.get_public(payload.client_key)
    tenant = await tenants.mark_status(
        payload.client_key, "uninstalled", issued_at=claims.issued_at
    )
    if known is not None and tenant is None:
        return _stale("uninstalled", payload.client_key, claims)
    if tenant is not None:
        await RedisBudget(request.app.state.redis, request.app.state.settings).forget_waiting(
            payload.client_key
        )
    log.info("connect.uninstalled", client_key=payload.client_key, known=known is not None)
    return Response(status_code=204)


async def _toggle(request: Request, status: Status) -> Response:
    settings: Settings = request.app.state.settings
    tenants: TenantStore = request.app.state.tenants
    try:
        token = request_token(request)
        if parse_token(token).header.get("alg") == "RS256":
            payload, claims = await _signed_install(request, token, require_secret=False)
            tenant = await tenants.get_public(payload.client_key)
        else:
            tenant, claims = await authenticate(request, allow_inactive=True)
            payload = parse_lifecycle_payload(
                await read_json(request, settings.max_body_bytes), require_secret=False
            )
            if payload.client_key != tenant.client_key:
                raise IssuerMismatch("the body names another clientKey", tenant=tenant.client_key)
    except UninstalledTenant as exc:
        # Signed with the secret of a tenant since uninstalled (its secret went with it), as
        # Atlassian may send `disabled` after `uninstalled`: nothing to verify it with, and
        # nothing to change.
        log_rejection(request, exc)
        if request.method != "POST":
            raise
        log.info(f"connect.{status}.ignored", client_key=clipped(exc.tenant))
        return Response(status_code=204)
    except VerificationError as exc:
        log_rejection(request, exc)
        raise
    if request.method != "POST":
        return _method_not_allowed()
    _check_app_key(payload, settings)
    if tenant is None or tenant.status == "uninstalled":
        # Atlassian may send `disabled` after `uninstalled`: acknowledge, keep the record as is.
        log.info(f"connect.{status}.ignored", client_key=payload.client_key)
        return Response(status_code=204)
    if await tenants.mark_status(tenant.client_key, status, issued_at=claims.issued_at) is None:
        return _stale(status, tenant.client_key, claims)
    if status == "enabled" and tenant.status == "disabled":
        # Webhooks were refused while it was off: sweeps start from now, not from then.
        state = ReconcileState(request.app.state.redis, settings.redis_prefix)
        await state.start_over(tenant.client_key, int(time.time() * 1000))
    log.info(f"connect.{status}", client_key=tenant.client_key)
    return Response(status_code=204)


async def enabled(request: Request) -> Response:
    return await _toggle(request, "enabled")


async def disabled(request: Request) -> Response:
    unsigned = "authorization" not in request.headers and "jwt" not in request.query_params
    if unsigned and request.method == "POST":
        # Atlassian sends `disabled` after `uninstalled` without a JWT (AC-2561): acknowledged,
        # and since nothing proves who sent it, nothing is changed.
        log.info("connect.disabled.unsigned_ignored")
        return Response(status_code=204)
    return await _toggle(request, "disabled")


routes = [
    Route("/connect/installed", installed, methods=ANY_METHOD),
    Route("/connect/uninstalled", uninstalled, methods=ANY_METHOD),
    Route("/connect/enabled", enabled, methods=ANY_METHOD),
    Route("/connect/disabled", disabled, methods=ANY_METHOD),
]
