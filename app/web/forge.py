"""Forge Remote endpoints: product events, lifecycle, the hourly token refresh, pre-uninstall.

Every request carries a Forge Invocation Token; it is verified against the configured JWKS
before anything else happens. Each verified request registers its installation and stores the
app system token (``x-forge-oauth-system``) when one came along, unless a later invocation's is
held or its invocation token was seen before with another one. Events are normalised with
:func:`app.atlassian.events.from_forge` and answered 2xx only after the queue stored them, well
within Forge's 5 s limit (nothing else is done inline): the request's Redis steps share one
bound, ``REACTOR_INGEST_TIMEOUT_SECONDS`` in all, and a request that spends it is answered 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app import ingest
from app.atlassian.events import FORGE_EVENTS, from_forge
from app.atlassian.forge_token import (
    ForgeTokenError,
    Invocation,
    bearer_token,
    check_module,
    inspect_token,
    system_token_expiry,
    verify_token,
)
from app.atlassian.token_errors import DisabledTenant
from app.budget.redis_budget import RedisBudget
from app.crypto import SecretBox
from app.errors import (
    IngestError,
    InvalidPayload,
    QueueUnavailable,
    VerificationError,
)
from app.installations import (
    InstallationStore,
    Invoked,
    Saved,
    SystemToken,
    forge_tenant,
    is_forge_tenant,
)
from app.jwks import JwksClient
from app.settings import Settings
from app.tenants import TenantStore

LIFECYCLE_EVENTS = ("avi:forge:installed:app", "avi:forge:upgraded:app")
NOT_CONFIGURED = "forge_not_configured"

# The modules of manifest.yml that call each route: its endpoint and the trigger using it. A
# token naming one of these modules is only good for that module's route, so a token captured
# from an event delivery cannot mark the installation uninstalling. A module key not listed
# here (a manifest with keys of its own) is not checked.
ROUTE_MODULES = {
    "events": frozenset({"ep-events", "confluence-events"}),
    "lifecycle": frozenset({"ep-lifecycle", "app-lifecycle"}),
    "token-refresh": frozenset({"ep-token-refresh", "system-token-refresh"}),
    "pre-uninstall": frozenset({"ep-pre-uninstall", "pre-uninstall"}),
}


log = structlog.get_logger("app.web.forge")
T = TypeVar("T")


class ForgeRemote:
    """What the Forge routes share: the JWKS clients, the verifier settings, the store."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(follow_redirects=False)
        self.store = (
            InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
            if settings.secret_keys
            else None
        )
        self._jwks: dict[str, JwksClient] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    def jwks(self, ic_label: str | None) -> JwksClient:
        url = self.settings.forge_jwks_url
        if ic_label is not None and self.settings.forge_ic_jwks_url_template:
            # inspect_token already matched the label against ^[a-z0-9_-]{1,50}$
            url = self.settings.forge_ic_jwks_url_template.replace("{IC_LABEL}", ic_label)
        if url not in self._jwks:
            self._jwks[url] = JwksClient(self.http, url)
        return self._jwks[url]

    async def verify(self, authorization: str | None) -> tuple[Invocation, InstallationStore]:
        if not self.settings.forge_app_id or self.store is None:
            raise ForgeTokenError(NOT_CONFIGURED, "this service is not set up as a Forge remote")
        labels = self.settings.forge_ic_labels
        token = bearer_token(authorization)
        header = inspect_token(token, labels)
        keys = await self.jwks(header.ic_label).keys_for(header.kid)
        invocation = verify_token(
            token,
            keys,
            app_id=self.settings.forge_app_id,
            now=time.time(),
            allowed_ic_labels=labels,
        )
        return invocation, self.store


class _RedisTime:
    """What is left of one request's time for Redis (``ingest_timeout_seconds`` in all)."""

    __slots__ = ("left",)

    def __init__(self, seconds: float) -> None:
        self.left = seconds


async def _stored(request: Request, step: Awaitable[T]) -> T:
    """Run a Redis step within what is left of the request's Redis time; a slow or down Redis,
    or that time spent, answers 503 (Forge retries, and the queue dedupes the retry).

    ``REACTOR_INGEST_TIMEOUT_SECONDS`` bounds all of a request's Redis steps together, not each
    one: an event takes up to six (tenant, Connect link, registry, token, queue, stats), so a
    per-step bound let a slow Redis hold the answer past Forge's 5 s limit. The key server has
    its own bound (2 s, :data:`app.jwks.DEFAULT_TIMEOUT_SECONDS`); with the default 2 s here,
    the two together stay within Forge's limit.
    """
    budget: _RedisTime | None = getattr(request.state, "forge_redis_time", None)
    if budget is None:
        budget = _RedisTime(request.app.state.settings.ingest_timeout_seconds)
        request.state.forge_redis_time = budget
    if budget.left <= 0:
        if inspect.iscoroutine(step):
            step.close()  # never started
        raise QueueUnavailable("Redis took this request's time for it; retry later")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        return await asyncio.wait_for(step, budget.left)
    except (RedisError, OSError, TimeoutError) as exc:
        raise QueueUnavailable("the installation store is unavailable; retry later") from exc
    finally:
        budget.left -= loop.time() - started


async def _accept(
    request: Request, route: str, *, event: bool = False, keep_token: bool = True
) -> tuple[Invocation, InstallationStore, str]:
    """Verify the caller, register its installation, keep its system token (unless told not
    to: the lifecycle route keeps it once it has recorded the event); return the tenant."""
    forge: ForgeRemote = request.app.state.forge
    invocation, store = await forge.verify(request.headers.get("authorization"))
    check_module(invocation, route, ROUTE_MODULES)
    tenant = await _stored(
        request, store.resolve_tenant(invocation.installation_id, invocation.cloud_id)
    )
    if not is_forge_tenant(tenant):
        tenant = await _linked_tenant(request, tenant, invocation, event=event)
    await _stored(request, store.register(invocation, tenant))
    if keep_token:
        await _keep_token(request, invocation, store)
    return invocation, store, tenant


async def _keep_token(request: Request, invocation: Invocation, store: InstallationStore) -> None:
    """Store the call's app system token, as the installation's newest unless a later
    invocation's is held (see :meth:`InstallationStore.save_system_token`: none is kept for an
    installation being uninstalled, nor from an invocation token replayed with another one)."""
    system = request.headers.get("x-forge-oauth-system", "").strip()
    if not system:
        return
    now = time.time()
    fit = bearer_token(request.headers.get("authorization"))  # verified by _accept already
    invoked = Invoked(
        hashlib.sha256(fit.encode()).hexdigest(), invocation.issued_at, invocation.expires_at
    )
    token = SystemToken(system, invocation.api_base_url, system_token_expiry(system, now))
    saved = await _stored(
        request, store.save_system_token(invocation.installation_id, token, invoked)
    )
    if saved is Saved.REPLAYED:
        log.warning(
            "forge system token refused: its invocation token came before with another one",
            installation_id=invocation.installation_id,
        )


async def _linked_tenant(
    request: Request, client_key: str, invocation: Invocation, *, event: bool
) -> str:
    """The tenant of an installation linked to a Connect install, as that install stands now.

    Linked: the Connect tenant (both routes share it, events dedupe across them). Disabled: a
    product ``event`` is refused as the Connect route refuses it, so nothing is acknowledged
    that the worker would only defer (lifecycle, token refresh and pre-uninstall calls still
    go through: they manage the installation, they trigger nothing). Uninstalled: the Connect
    side no longer serves the site, this installation does on its own, with its system token,
    under the same tenant id (a new id would run every reaction again). Gone (no record):
    ``forge:<cloudId>``.
    """
    tenants: TenantStore = request.app.state.tenants
    linked = await _stored(request, tenants.get_public(client_key))
    if linked is None:
        return forge_tenant(invocation.cloud_id)
    if linked.status == "disabled" and event:
        raise DisabledTenant("the app is disabled on this site", tenant=client_key)
    return client_key


async def _json_body(request: Request) -> dict[str, Any]:
    """A lifecycle body, checked as events are (media type, bound, strict JSON object); a
    request without a content type or a body is taken as an empty JSON object."""
    ingest.check_media_type(request.headers.get("content-type", "application/json"))
    raw = await ingest.read_body(request, request.app.state.settings.max_body_bytes)
    if not raw.strip():
        return {}
    body = ingest.parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidPayload("the body must be a JSON object")
    return body


def unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """The event object of either envelope: top-level fields or under ``payload``."""
    payload = body.get("payload")
    return payload if isinstance(payload, dict) and "eventType" in payload else body


def retry_count(body: dict[str, Any]) -> int:
    """``retryContext.retryCount`` from either envelope level; 0 on a first delivery."""
    for level in (body, unwrap(body)):
        context = level.get("retryContext")
        if isinstance(context, dict):
            count = context.get("retryCount")
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                return count
    return 0


async def events(request: Request) -> JSONResponse:
    """Product events: verify, then the shared ingest checks, normalise, store (one log line)."""
    counted = ingest.counters(request.app.state, "forge")
    counted.received.inc()
    try:
        return await _event(request, counted)
    except (VerificationError, IngestError) as exc:
        await counted.reject(exc.code)
        raise


async def _event(request: Request, counted: ingest.Counters) -> JSONResponse:
    invocation, store, tenant = await _accept(request, "events", event=True)
    ingest.check_media_type(request.headers.get("content-type"))
    raw = await ingest.read_body(request, request.app.state.settings.max_body_bytes)
    body = ingest.parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidPayload("the body must be a JSON object")
    name = unwrap(body).get("eventType")
    if not isinstance(name, str):
        raise InvalidPayload("eventType is missing or not a string")
    retries = retry_count(body)
    context = {"installation_id": invocation.installation_id, "retry_count": retries}
    bound = log.bind(tenant=tenant, forge_event=name[:80], **context)
    if name not in FORGE_EVENTS:
        # acknowledged (Forge would retry a refusal) but not stored; counted as received only
        bound.warning("forge event ignored: not a handled type")
        return JSONResponse({"ignored": "unhandled event type"})
    if name.endswith(":label") and not _labels_content(unwrap(body)):
        # labels on spaces and templates: nothing for content reactions (no retries wanted)
        bound.info("forge label event ignored: not on content")
        return JSONResponse({"ignored": "label is not on content"})
    event = from_forge(tenant, body, raw)
    created = await _stored(
        request,
        ingest.store(
            request.app.state.queue, event, counted, what="forge event", logger=bound, **context
        ),
    )
    await _stored(request, store.record_event(invocation.installation_id, event.type, retries))
    return JSONResponse({"id": event.id, "duplicate": not created})


def _labels_content(event: dict[str, Any]) -> bool:
    """Whether a label event names the content it labels (``content``, or ``labeledContent``
    as :func:`app.atlassian.events.from_forge` also reads it) rather than a space."""
    for key in ("content", "labeledContent"):
        labelled = event.get(key)
        if isinstance(labelled, dict) and labelled:
            return labelled.get("type") != "space"
    return False


async def lifecycle(request: Request) -> JSONResponse:
    invocation, store, tenant = await _accept(request, "lifecycle", keep_token=False)
    body = await _json_body(request)
    name = unwrap(body).get("eventType")
    if not isinstance(name, str) or name not in LIFECYCLE_EVENTS:
        log.warning("forge lifecycle event ignored", forge_event=str(name)[:80])
        await _keep_token(request, invocation, store)
        return JSONResponse({"ignored": "unhandled lifecycle event"})
    await _stored(request, store.record_lifecycle(invocation.installation_id, str(name)))
    await _keep_token(request, invocation, store)  # an installation made active again keeps it
    log.info(
        "forge app lifecycle",
        forge_event=name,
        installation_id=invocation.installation_id,
        tenant=tenant,
        retry_count=retry_count(body),
    )
    return JSONResponse({"installation": invocation.installation_id, "tenant": tenant})


async def token_refresh(request: Request) -> JSONResponse:
    invocation, _, _ = await _accept(request, "token-refresh")
    has_token = bool(request.headers.get("x-forge-oauth-system", "").strip())
    if not has_token:
        log.warning(
            "forge scheduled trigger without a system token",
            installation_id=invocation.installation_id,
        )
    return JSONResponse({"installation": invocation.installation_id, "system_token": has_token})


async def pre_uninstall(request: Request) -> JSONResponse:
    invocation, store, tenant = await _accept(request, "pre-uninstall")
    await _stored(request, store.mark_uninstalling(invocation.installation_id))
    budget = RedisBudget(request.app.state.redis, request.app.state.settings)
    await _stored(request, budget.forget_waiting(tenant))
    log.info("forge app uninstalling", installation_id=invocation.installation_id, tenant=tenant)
    return JSONResponse({"installation": invocation.installation_id, "status": "uninstalling"})


routes = [
    Route("/forge/events", events, methods=["POST"]),
    Route("/forge/lifecycle", lifecycle, methods=["POST"]),
    Route("/forge/token-refresh", token_refresh, methods=["POST"]),
    Route("/forge/pre-uninstall", pre_uninstall, methods=["POST"]),
]
