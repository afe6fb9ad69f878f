"""The JSON ops API under ``/api/`` (same sign-in as the dashboard), and ``/metrics``.

Read endpoints are GET; actions are POST with a JSON body and, when authenticated by the
session cookie, an ``X-CSRF-Token`` header. The CLI sends ``Authorization: Bearer <token>``.

::

    GET  /api/status                    overview: queue, last hour, workers, DLQ, budget
    GET  /api/jobs?event_id=&content_id=&tenant=&type=&status=&limit=&cursor=
    GET  /api/jobs/{event_id}           detail (raw payload masked), attempts
    GET  /api/dead?limit=&cursor=       dead letters
    POST /api/dead/retry   {"ids": [...]} or {"all": true[, "tenant": T][, "type": X]}
    POST /api/dead/discard {"ids": [...]} or {"all": true[, "tenant": T][, "type": X]}
    GET  /api/budget  /api/tenants  /api/workers  /api/reactions
    GET  /api/audit?limit=              operator actions newest first, up to 5000; apart,
                                        refused sign-ins: last 24 h count, newest (up to 1000)
    GET  /metrics                       Prometheus text format (no sign-in, like /healthz)

Lists page: ``limit`` rows (1 to 500, default 100), newest first; the answer's ``next_cursor``
(null on the last page) passed as ``cursor`` gives the next page. A filtered page reads a
bounded slice of the index, so it may hold fewer rows than ``limit`` (even none) while
``next_cursor`` is not null. Bad parameters answer 400; an action's body must be
``application/json`` (415) of at most 256 KiB (413), and holds ids or ``all`` (400 for both,
for neither, or for any other field).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

from pydantic import SecretStr
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.atlassian.events import EVENT_TYPES, event_type
from app.dashboard import auth, views
from app.dashboard.audit import MAX_ENTRIES, MAX_REFUSED, REFUSED_HOURS, AuditLog
from app.dashboard.data import DEFAULT_PAGE, MAX_PAGE, Cursor
from app.dlq import Filter
from app.errors import IngestError, InvalidPayload
from app.ingest import check_media_type, parse_json, read_body
from app.jobstate import STATES
from app.metrics import CONTENT_TYPE, Metrics
from app.settings import Settings
from app.web.responses import error_response

MAX_JSON_BYTES = 256 * 1024
DEFAULT_AUDIT = 100


def _audit(request: Request) -> AuditLog:
    settings: Settings = request.app.state.settings
    return AuditLog(request.app.state.redis, settings.redis_prefix)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(json.loads(json.dumps(data, default=str)), status_code=status)


@auth.api
async def status(request: Request) -> Response:
    return _json(await views.overview(request))


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within ``low..high``; IngestError (400) otherwise."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and low <= int(raw) <= high:
        return int(raw)
    raise IngestError(f"{name} must be a whole number from {low} to {high}")


def check_params(request: Request, *known: str) -> None:
    """Refuse (IngestError, 400) a query parameter the endpoint does not know: a misspelt
    filter (``tenat=``) would otherwise answer every row, unfiltered."""
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise IngestError(
            f"unknown query parameter {names}; this endpoint takes {', '.join(known)}"
        )


def cursor_param(request: Request) -> Cursor | None:
    raw = request.query_params.get("cursor", "")
    if raw == "":
        return None
    try:
        return Cursor.parse(raw)
    except ValueError:
        raise IngestError("cursor must be the next_cursor of a previous page, as given") from None


def check_status(value: str) -> None:
    """A job-state filter is empty (any state) or one of the states; IngestError (400) if not."""
    if value and value not in STATES:
        raise IngestError(f"status must be one of {', '.join(STATES)}")


def check_type(value: str) -> str:
    """A type filter as stored: empty (any type), or an event type in either vocabulary
    (``page.updated``, Connect's ``page_updated``, Forge's ``avi:confluence:updated:page``);
    IngestError (400) for one that is neither, which would silently match nothing."""
    if not value:
        return ""
    known = event_type(value)
    if known is None:
        raise IngestError(f"type must be an event type ({', '.join(EVENT_TYPES)})")
    return known


def duration(seconds: int) -> str:
    """``3 days``, ``36 hours``, ``90 minutes``: the largest unit that divides ``seconds``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


@auth.api
async def jobs(request: Request) -> Response:
    q = request.query_params
    names = ("event_id", "content_id", "tenant", "type", "status")
    check_params(request, *names, "limit", "cursor")
    filters = {k: q.get(k, "") for k in names}
    check_status(filters["status"])
    filters["type"] = check_type(filters["type"])
    limit = int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    page = await views.search_jobs(request, filters, limit, cursor_param(request))
    return _json({"jobs": page.rows, "next_cursor": page.next_cursor})


@auth.api
async def job(request: Request) -> Response:
    detail = await views.job_detail(request, request.path_params["event_id"])
    if detail is None:
        settings: Settings = request.app.state.settings
        events = settings.event_retention_seconds
        dead = max(settings.dead_letter_retention_seconds, events)
        return error_response(
            404,
            "not_found",
            f"no such job: event records are kept {duration(events)} after their last change, "
            f"dead letters {duration(dead)}",
        )
    return _json(detail)


@auth.api
async def dead(request: Request) -> Response:
    check_params(request, "limit", "cursor")
    limit = int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    return _json(await views.dead_letters(request, limit, cursor_param(request)))


async def _body(request: Request) -> dict[str, Any]:
    """The action's JSON object: 415 unless application/json, 413 over
    :data:`MAX_JSON_BYTES` (declared, or as soon as the streamed body passes it), 400 unless
    a JSON object."""
    check_media_type(request.headers.get("content-type"))
    data = parse_json(await read_body(request, MAX_JSON_BYTES))
    if not isinstance(data, dict):
        raise InvalidPayload('send {"ids": [...]} or {"all": true}')
    return data


# What a dead-letter action's body may hold: ids, or everything (optionally filtered).
_ACTION_KEYS = frozenset({"ids", "all", "tenant", "type"})


def _action_request(body: dict[str, Any]) -> tuple[str, list[str], Filter | None] | str:
    """(scope, ids, filter) of a dead-letter action body, or why it is refused.

    ``{"ids": [...]}`` names dead letters; ``{"all": true}`` takes every one, or only those of
    ``tenant`` and/or ``type`` (as ``reactor dlq retry --all --tenant T --type X``). Anything
    else is refused rather than guessed at: an action on every dead letter must be meant.
    """
    unknown = sorted(set(body) - _ACTION_KEYS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}; send ids, or all with tenant/type"
    ids = body.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        return "ids must be a list of event ids"
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        return "all must be true or false"
    filters = {key: body.get(key) for key in ("tenant", "type") if key in body}
    for key, value in filters.items():
        if not isinstance(value, str) or not value:  # null included: never "no filter"
            return f"{key} must be a non-empty string"
    if "type" in filters:
        known = event_type(str(filters["type"]))
        if known is None:
            return f"type must be an event type ({', '.join(EVENT_TYPES)})"
        filters["type"] = known
    if everything and "ids" in body:
        return 'send either ids or {"all": true}, not both'
    if not everything:
        if filters:
            return 'tenant and type filter {"all": true}; with ids, name the ids only'
        if not ids:
            return 'name the ids, or send {"all": true}'
        return "selected", list(dict.fromkeys(ids)), None
    return "all", [], Filter(tenant=filters.get("tenant"), type=filters.get("type"))


async def _dead_action(request: Request, action: str) -> Response:
    parsed = _action_request(await _body(request))
    if isinstance(parsed, str):
        return error_response(400, "invalid_request", parsed)
    scope, ids, where = parsed
    result = await views.dead_letter_action(request, action, scope, ids, where)
    if where is not None and (where.tenant or where.type):
        target = f"all tenant={where.tenant or '*'} type={where.type or '*'}"
    else:
        target = "all" if scope == "all" else ",".join(ids[:20])
    await _audit(request).record(
        request.state.operator.id,
        f"dead_letter_{action}",
        target=target,
        outcome="ok" if result.get("ok") else "failed",
        detail={**views.audit_detail(result), "via": "api"},
    )
    if result.get("ok"):
        return _json(result)
    # Nothing done: 404 when no id named is an event we hold, else 409 (not dead any more).
    everything_unknown = result.get("unknown") and not result.get("not_dead")
    return _json(result, 404 if everything_unknown and not result.get("closing") else 409)


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
    """Operator actions (``entries``) and, apart, the refused sign-ins: the count of the last
    hours and the newest ones, ``limit`` of each."""
    check_params(request, "limit")
    limit = int_param(request, "limit", DEFAULT_AUDIT, 1, MAX_ENTRIES)
    log = _audit(request)
    entries = await log.recent(limit)
    refused = await log.recent_refused(min(limit, MAX_REFUSED))
    return _json(
        {
            "entries": [asdict(e) for e in entries],
            "refused_sign_ins": {
                "hours": REFUSED_HOURS,
                "count": await log.refused_count(),
                "entries": [asdict(e) for e in refused],
            },
        }
    )


async def metrics(request: Request) -> Response:
    """Prometheus exposition; gauges that live in Redis are read at scrape time.

    Open unless ``REACTOR_METRICS_TOKEN`` is set; then only a scrape bearing it is answered
    (the series name tenants and their use of the budget, and the web port faces Atlassian).
    """
    token: SecretStr | None = request.app.state.settings.metrics_token
    given = auth.bearer_token(request)
    if token is not None and (
        given is None or not auth.match_token(given, [token.get_secret_value()])
    ):
        return error_response(
            401,
            "unauthorized",
            "send Authorization: Bearer <metrics token>",
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    registry: Metrics | None = getattr(request.app.state, "metrics", None)
    if registry is None:
        registry = request.app.state.metrics = Metrics()
    # Redis down or stalled: the counters of this process are still worth serving, within the
    # bound on one Redis reply however many reads the gauges take.
    # ``reactor_redis_up`` says whether the gauges kept in Redis are this scrape's or stale.
    bound = request.app.state.settings.redis_timeout_seconds
    try:
        await asyncio.wait_for(views.refresh_gauges(request, registry), bound)
        registry.redis_up.set(1)
    except (RedisError, OSError, TimeoutError):
        registry.redis_up.set(0)
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
