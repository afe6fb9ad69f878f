"""The edge of the product API: every operation passes through :func:`operation`.

In order: authenticate (401), injected faults (latency, 503s, 429 storms), burst limit, points
quota, the handler, then points charged and the rate-limit headers added. Handlers are plain
functions ``(Ctx) -> Reply`` that raise :class:`~simulator.errors.ApiError`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulator.auth import Principal, Unauthorized, authenticate, missing_scope
from simulator.errors import ApiError, bad_body, forbidden
from simulator.pagination import Page, envelope, link_header
from simulator.params import Query
from simulator.ratelimit import Limited, burst_limited, cost
from simulator.site import Simulator

GATEWAY_KEY = "sim.gateway"
MAX_BODY = 5 * 1024 * 1024


@dataclass
class Ctx:
    sim: Simulator
    principal: Principal
    query: Query
    path: str  # host-relative, starting /wiki
    base: str  # the site base URL, ending /wiki
    params: dict[str, str]
    body: Any = None
    method: str = "GET"

    @property
    def me(self) -> str:
        return self.principal.account_id


@dataclass
class Reply:
    data: Any = None
    status: int = 200
    objects: int = 1
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def listing(cls, ctx: Ctx, results: list[dict[str, Any]], page: Page) -> Reply:
        headers = {}
        link = link_header(page, ctx.base)
        if link:
            headers["Link"] = link
        return cls(envelope(results, page, ctx.base), objects=len(results), headers=headers)


Handler = Callable[[Ctx], Reply]


def site_base(sim: Simulator, request: Request) -> str:
    origin = sim.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return origin.rstrip("/") + "/wiki"


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.status)


def _limited(limited: Limited) -> JSONResponse:
    exc = ApiError(429, "TOO_MANY_REQUESTS", "Rate limit exceeded.", limited.reason)
    return JSONResponse(exc.envelope(), status_code=429, headers=limited.headers)


async def _read_body(request: Request) -> Any:
    declared = request.headers.get("content-type")
    media_type = (declared or "application/json").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        # The v2 API consumes application/json only (the spec's request bodies).
        raise ApiError(
            415, "UNSUPPORTED_MEDIA_TYPE", f"Unsupported media type {media_type!r}; send JSON."
        )
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "REQUEST_ENTITY_TOO_LARGE", "Request body is too large.")
    if not raw:
        raise bad_body("A request body is required.")
    try:
        return json.loads(raw)
    except ValueError:
        raise bad_body("The request body is not valid JSON.") from None


def _principal(sim: Simulator, request: Request) -> Principal:
    raw_path = request.scope.get("sim.raw_path") or request.scope.get("raw_path") or b""
    url = raw_path.decode("latin-1")
    if request.url.query:
        url = f"{url}?{request.url.query}"
    return authenticate(
        sim.store,
        authorization=request.headers.get("authorization"),
        method=request.method,
        url=url,
        site_base_url=site_base(sim, request),
        via_gateway=GATEWAY_KEY in request.scope,
    )


async def _faults(sim: Simulator, principal: Principal) -> Response | None:
    faults = sim.faults
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_ms / 1000)
    if faults.error_rate and sim.rng.random() < faults.error_rate:
        exc = ApiError(503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable.")
        return JSONResponse(exc.envelope(), status_code=503, headers={"Retry-After": "1"})
    now = sim.clock.time()
    if principal.app and now < faults.storm_until:
        # an overload, not the hourly quota: answered as a burst limit is, until the storm ends
        return _limited(burst_limited(now, max(1, math.ceil(faults.storm_until - now))))
    return None


def _check_limits(sim: Simulator, principal: Principal, method: str) -> Response | None:
    limited = sim.limiter.take_burst(principal.caller, method)
    if limited is None and principal.app and principal.mode != "basic":
        limited = sim.limiter.check_quota(principal.app, sim.store.cloud_id)
    return _limited(limited) if limited else None


def operation(template: str, handler: Handler, method: str = "GET") -> Route:
    """A product API route whose every call is authenticated, limited, charged and counted."""

    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        response = await _serve(sim, request, handler)
        prefix = request.scope.get("root_path", "")
        sim.counters.calls[f"{request.method} {prefix}{template} {response.status_code}"] += 1
        return response

    return Route(template, endpoint, methods=[method])


async def _serve(sim: Simulator, request: Request, handler: Handler) -> Response:
    try:
        principal = _principal(sim, request)
    except Unauthorized as exc:
        sim.counters.auth_failures[exc.reason] += 1
        return PlainTextResponse("Unauthorized", status_code=401)
    scope = missing_scope(principal, request.method)
    if scope is not None:
        sim.counters.auth_failures[f"scope {scope} missing"] += 1
        return _error(forbidden(f"The app's scopes do not include {scope}."))
    early = await _faults(sim, principal) or _check_limits(sim, principal, request.method)
    if early is not None:
        return early
    metered = principal.app if principal.app and principal.mode != "basic" else None
    # Spent before this request: refused when enforced (above), reported when not.
    over = metered is not None and sim.limiter.exhausted(metered, sim.store.cloud_id)
    try:
        body = await _read_body(request) if request.method in ("POST", "PUT") else None
        ctx = Ctx(
            sim=sim,
            principal=principal,
            query=Query(request.query_params.multi_items()),
            path=request.scope["path"],
            base=site_base(sim, request),
            params={k: str(v) for k, v in request.path_params.items()},
            body=body,
            method=request.method,
        )
        reply = handler(ctx)
        response: Response = (
            JSONResponse(reply.data, status_code=reply.status, headers=reply.headers)
            if reply.data is not None
            else Response(status_code=reply.status, headers=reply.headers)
        )
        objects = reply.objects
    except ApiError as exc:
        response, objects = _error(exc), 0
    if metered is not None:
        sim.limiter.charge(metered, sim.store.cloud_id, cost(request.method, objects))
        headers = sim.limiter.quota_headers(metered, sim.store.cloud_id, refused=over)
        response.headers.update(headers)
    sim.save_soon()
    return response
