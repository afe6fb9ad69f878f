"""The JSON ops API under ``/api/`` (same sign-in as the dashboard), and ``/metrics``.

Read endpoints are GET; actions are POST with a JSON body and, when authenticated by the
session cookie, an ``X-CSRF-Token`` header. The CLI sends ``Authorization: Bearer <token>``.

::

    GET  /api/status                    overview: queue, last hour, workers, DLQ, budget
    GET  /api/jobs?event_id=&content_id=&tenant=&type=&status=
    GET  /api/jobs/{event_id}           detail (raw payload masked), attempts
    GET  /api/dead                      dead letters
    POST /api/dead/retry   {"ids": [...]} or {"all": true}
    POST /api/dead/discard {"ids": [...]} or {"all": true}
    GET  /api/budget  /api/tenants  /api/workers  /api/reactions  /api/audit
    GET  /metrics                       Prometheus text format (no sign-in, like /healthz)
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.dashboard import auth, views
from app.dashboard.audit import AuditLog
from app.metrics import CONTENT_TYPE, Metrics
from app.settings import Settings
from app.web.responses import error_response

MAX_JSON_BYTES = 256 * 1024


def _audit(request: Request) -> AuditLog:
    settings: Settings = request.app.state.settings
    return AuditLog(request.app.state.redis, settings.redis_prefix)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(data, default=str)), status_code=status)


@auth.api
async def status(request: Request) -> Response:
    return _json(await views.overview(request))


@auth.api
async def jobs(request: Request) -> Response:
    q = request.query_params
    filters = {k: q.get(k, "") for k in ("event_id", "content_id", "tenant", "type", "status")}
    return _json({"jobs": await views.search_jobs(request, filters)})


@auth.api
async def job(request: Request) -> Response:
    detail = await views.job_detail(request, request.path_params["event_id"])
    if detail is None:
        return error_response(404, "not_found", "no such job (records are kept 14 days)")
    return _json(detail)


@auth.api
async def dead(request: Request) -> Response:
    return _json(await views.dead_letters(request))


async def _body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        return None
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _dead_action(request: Request, action: str) -> Response:
    body = await _body(request)
    if body is None:
        return error_response(400, "invalid_request", 'send {"ids": [...]} or {"all": true}')
    ids = body.get("ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return error_response(400, "invalid_request", "ids must be a list of event ids")
    scope = "all" if body.get("all") is True else "selected"
    if scope == "selected" and not ids:
        return error_response(400, "invalid_request", 'name the ids, or send {"all": true}')
    result = await views.dead_letter_action(request, action, scope, ids)
    await _audit(request).record(
        request.state.operator.id,
        f"dead_letter_{action}",
        target="all" if scope == "all" else ",".join(ids[:20]),
        outcome="ok" if result.get("ok") else "failed",
        detail={**result, "via": "api"},
    )
    return _json(result, 200 if result.get("ok") else 409)


@auth.api
async def dead_retry(request: Request) -> Response:
    return await _dead_action(request, "retry")


@auth.api
async def dead_discard(request: Request) -> Response:
    return await _dead_action(request, "discard")


@auth.api
async def budget(request: Request) -> Response:
    return _json(await views.budget(request))


@auth.api
async def tenants(request: Request) -> Response:
    return _json(await views.tenants(request))


@auth.api
async def workers(request: Request) -> Response:
    return _json(await views.workers(request))


@auth.api
async def reactions(request: Request) -> Response:
    return _json(await views.reactions(request))


@auth.api
async def audit(request: Request) -> Response:
    entries = await _audit(request).recent(int(request.query_params.get("limit", "100") or 100))
    return _json({"entries": [asdict(e) for e in entries]})


async def metrics(request: Request) -> Response:
    """Prometheus exposition; gauges that live in Redis are read at scrape time."""
    registry: Metrics | None = getattr(request.app.state, "metrics", None)
    if registry is None:
        registry = request.app.state.metrics = Metrics()
    # Redis down: the counters of this process are still worth serving.
    with contextlib.suppress(RedisError, OSError):
        await views.refresh_gauges(request, registry)
    return Response(registry.render(), media_type=CONTENT_TYPE)


routes: list[BaseRoute] = [
    Route("/api/status", status, methods=["GET"]),
    Route("/api/jobs", jobs, methods=["GET"]),
    Route("/api/jobs/{event_id}", job, methods=["GET"]),
    Route("/api/dead", dead, methods=["GET"]),
    Route("/api/dead/retry", dead_retry, methods=["POST"]),
    Route("/api/dead/discard", dead_discard, methods=["POST"]),
    Route("/api/budget", budget, methods=["GET"]),
    Route("/api/tenants", tenants, methods=["GET"]),
    Route("/api/workers", workers, methods=["GET"]),
    Route("/api/reactions", reactions, methods=["GET"]),
    Route("/api/audit", audit, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
