"""Dashboard pages under ``/dashboard``: sign-in, the read-only views, and the audit log.

Actions (dead-letter retry/discard) live in :mod:`app.dashboard.actions`; live updates in
:mod:`app.dashboard.live`. Every page needs a signed-in operator (see :mod:`.auth`).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from app.dashboard import actions, auth, live, views
from app.dashboard.api import check_status, check_type, cursor_param, int_param
from app.dashboard.audit import REFUSED_HOURS, AuditLog
from app.dashboard.data import DEFAULT_PAGE, MAX_PAGE, Cursor, ReadModel
from app.errors import IngestError
from app.jobstate import STATES
from app.settings import Settings

HERE = Path(__file__).parent
DEAD_PAGE = 200  # dead letters a page of /dashboard/dead shows unless ``limit`` says otherwise
AUDIT_PAGE = 300  # operator actions the Audit log page shows
REFUSED_PAGE = 100  # refused sign-ins it shows below them
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["ago"] = views.ago
templates.env.filters["clock"] = views.clock
templates.env.filters["pretty"] = views.pretty

NAV = [
    ("overview", "/dashboard", "Overview"),
    ("jobs", "/dashboard/jobs", "Jobs"),
    ("dead", "/dashboard/dead", "Dead letters"),
    ("budget", "/dashboard/budget", "Budget"),
    ("tenants", "/dashboard/tenants", "Tenants"),
    ("workers", "/dashboard/workers", "Workers"),
    ("reactions", "/dashboard/reactions", "Reactions"),
    ("audit", "/dashboard/audit", "Audit log"),
]


def render(request: Request, name: str, active: str, status: int = 200, **ctx: Any) -> Response:
    context = {
        "operator": getattr(request.state, "operator", None),
        "csrf": auth.csrf_for(request),
        "nav": NAV,
        "active": active,
        **ctx,
    }
    return templates.TemplateResponse(request, name, context, status_code=status)


# The error page's heading and message per error code; other codes (bad input) show their detail.
ERRORS: dict[str, tuple[str, str]] = {
    "redis_unavailable": (
        "Redis unavailable",
        "The dashboard cannot reach Redis, where everything it shows is kept. "
        "Nothing was changed. Try again in a few seconds.",
    ),
    "csrf_failed": (
        "This form is out of date",
        "The page this form was sent from is older than your sign-in (you signed in again, "
        "perhaps in another tab). Nothing was done: reload the page and send the form again.",
    ),
    "too_many_attempts": (
        "Too many failed sign-ins",
        "Too many wrong operator tokens came from this address lately. "
        "Wait a few minutes, then try again.",
    ),
    "method_not_allowed": (
        "Not a page",
        "This address only takes the forms sent from a dashboard page.",
    ),
    "not_found": ("Page not found", "There is no dashboard page at this address."),
}


def error_page(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """The HTML answer of a page that cannot be shown (the ops API answers JSON instead): the
    status and headers (``Retry-After``, ``Allow``) of the JSON answer, a message and the way
    back: the form's page for a form, this page again when waiting may help."""
    heading, message = ERRORS.get(
        code, ("Cannot show this page", f"{detail[:1].upper()}{detail[1:]}.")
    )
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    links: list[tuple[str, str]] = []
    if request.method not in ("GET", "HEAD") or code == "method_not_allowed":
        back = auth.form_page(request.url.path)
        if back != auth.HOME:
            links.append((back, "Back to the form's page"))
    elif status in (429, 503):
        links.append((here, "Try again"))
    if getattr(request.state, "operator", None) is not None:
        links.append((auth.HOME, "Overview"))
    elif request.url.path != auth.SIGNIN_PATH:
        links.append((auth.SIGNIN_PATH, "Sign in"))
    response = render(
        request, "error.html", "", status, heading=heading, message=message, code=code, links=links
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def not_routed(request: Request) -> Response:
    """Any other method or path under ``/dashboard``: the 405 (with ``Allow``) or 404 page."""
    allowed: set[str] = set()
    for route in dashboard_routes:
        if isinstance(route, Route) and route.endpoint is not not_routed:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                allowed |= route.methods or set()
    request.state.operator = await auth.signed_in(request)  # the navigation, when signed in
    if allowed:
        return error_page(
            request,
            405,
            "method_not_allowed",
            "Method Not Allowed",
            {"Allow": ", ".join(sorted(allowed))},
        )
    return error_page(request, 404, "not_found", "Not Found")


def read_model(request: Request) -> ReadModel:
    settings: Settings = request.app.state.settings
    return ReadModel(request.app.state.redis, settings)


def audit_log(request: Request) -> AuditLog:
    settings: Settings = request.app.state.settings
    return AuditLog(request.app.state.redis, settings.redis_prefix)


async def signin_form(request: Request) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = render(
        request,
        "signin.html",
        "",
        nonce=nonce,
        next=auth.safe_next(request.query_params.get("next", "/dashboard")),
        error=None,
        configured=bool(request.app.state.settings.dashboard_tokens),
    )
    response.set_cookie(
        auth.SIGNIN_COOKIE,
        nonce,
        max_age=600,
        path="/dashboard/signin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@auth.public
async def signin(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    form = await auth.read_form(request)
    target = auth.safe_next(auth.first(form, "next"))
    nonce = request.cookies.get(auth.SIGNIN_COOKIE, "")
    supplied = auth.first(form, "csrf")
    if not nonce or not secrets.compare_digest(nonce.encode(), supplied.encode()):
        return render(
            request, "signin.html", "", 403, nonce="", next=target, configured=True,
            error="The sign-in form expired. Reload the page and try again.",
        )  # fmt: skip
    token = auth.match_token(auth.first(form, "token").strip(), settings.dashboard_tokens)
    if token is None:
        # Only wrong tokens are throttled: a right one signs in even from a throttled address.
        throttled = await auth.wrong_token(request, "form", page=True)
        if throttled is not None:
            return throttled
        response = render(
            request, "signin.html", "", 401, nonce=nonce, next=target, configured=True,
            error="That token is not an operator token.",
        )  # fmt: skip
        return response
    operator = auth.token_id(token)
    await audit_log(request).record(operator, "sign_in")
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookie(response, request, auth.new_session(settings, token, time.time()))
    response.delete_cookie(auth.SIGNIN_COOKIE, path="/dashboard/signin")
    return response


@auth.page
async def signout(request: Request) -> Response:
    await auth.revoke(request, request.state.operator)
    await audit_log(request).record(request.state.operator.id, "sign_out")
    response = RedirectResponse(auth.SIGNIN_PATH, status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


@auth.page
async def overview(request: Request) -> Response:
    data = await views.overview(request)
    return render(request, "overview.html", "overview", data=data)


def page_url(path: str, params: dict[str, str], cursor: str | None = None) -> str:
    """``path`` with the non-empty ``params`` (and ``cursor``) as its query string."""
    query = {k: v for k, v in params.items() if v}
    if cursor:
        query["cursor"] = cursor
    return f"{path}?{urlencode(query)}" if query else path


def paging(request: Request, default: int) -> tuple[int, Cursor | None]:
    """The page's ``limit`` and ``cursor``, validated as the ops API does (IngestError: 400)."""
    return int_param(request, "limit", default, 1, MAX_PAGE), cursor_param(request)


def invalid(request: Request, active: str, detail: str, first: str) -> Response:
    """The 400 page of a list page asked with a bad parameter, linking to its first page."""
    return render(request, "invalid.html", active, 400, detail=detail, first=first)


@auth.page
async def jobs(request: Request) -> Response:
    q = request.query_params
    filters = {k: q.get(k, "").strip() for k in ("event_id", "content_id", "tenant", "type")}
    status = q.get("status", "").strip()
    # links (the 400 page's "first page" included) carry only a valid status
    filters["status"] = status if status in STATES else ""
    searched = any(filters.values()) or "all" in q or "cursor" in q
    try:
        check_status(status)
        filters["type"] = check_type(filters["type"])
        limit, cursor = paging(request, DEFAULT_PAGE)
    except IngestError as exc:
        return invalid(request, "jobs", exc.detail, page_url("/dashboard/jobs", _kept(filters)))
    kept = _kept(filters, limit)
    page = await views.search_jobs(request, filters, limit, cursor) if searched else None
    return render(
        request,
        "jobs.html",
        "jobs",
        filters=filters,
        rows=page.rows if page else [],
        searched=searched,
        paged=cursor is not None,
        first_url=page_url("/dashboard/jobs", kept),
        next_url=page_url("/dashboard/jobs", kept, page.next_cursor)
        if page and page.next_cursor
        else None,
    )


def _kept(filters: dict[str, str], limit: int = DEFAULT_PAGE) -> dict[str, str]:
    """What every page of a job search carries: its filters (``all`` when there is none) and
    its ``limit`` unless the default."""
    return filters | {
        "all": "" if any(filters.values()) else "1",
        "limit": str(limit) if limit != DEFAULT_PAGE else "",
    }


@auth.page
async def dead_letters(request: Request) -> Response:
    """Dead letters, :data:`DEAD_PAGE` a page, newest death first; the actions post to
    :mod:`.actions`. ``done`` is the code of the notice an action leaves after its redirect
    (the page words it; see :func:`.actions.notice`)."""
    try:
        limit, cursor = paging(request, DEAD_PAGE)
    except IngestError as exc:
        return invalid(request, "dead", exc.detail, "/dashboard/dead")
    kept = {"limit": str(limit) if limit != DEAD_PAGE else ""}
    data = await views.dead_letters(request, limit, cursor)
    next_cursor = data.get("next_cursor")
    return render(
        request,
        "dead.html",
        "dead",
        data=data,
        notice=actions.notice(request.query_params),
        paged=cursor is not None,
        first_url=page_url("/dashboard/dead", kept),
        next_url=page_url("/dashboard/dead", kept, next_cursor) if next_cursor else None,
    )


@auth.page
async def job_detail(request: Request) -> Response:
    job = await views.job_detail(request, request.path_params["event_id"])
    if job is None:
        return render(request, "missing.html", "jobs", 404, what="job")
    return render(request, "job.html", "jobs", job=job)


@auth.page
async def budget(request: Request) -> Response:
    return render(request, "budget.html", "budget", budget=await views.budget(request))


@auth.page
async def tenants(request: Request) -> Response:
    return render(request, "tenants.html", "tenants", data=await views.tenants(request))


@auth.page
async def workers(request: Request) -> Response:
    return render(request, "workers.html", "workers", data=await views.workers(request))


@auth.page
async def reactions(request: Request) -> Response:
    return render(request, "reactions.html", "reactions", data=await views.reactions(request))


@auth.page
async def audit(request: Request) -> Response:
    """Operator actions, then the refused sign-ins (kept apart: see :mod:`.audit`)."""
    log = audit_log(request)
    return render(
        request,
        "audit.html",
        "audit",
        entries=await log.recent(AUDIT_PAGE),
        refused=await log.recent_refused(REFUSED_PAGE),
        refused_count=await log.refused_count(),
        refused_hours=REFUSED_HOURS,
    )


async def to_index(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        return error_page(
            request, 405, "method_not_allowed", "Method Not Allowed", {"Allow": "GET, HEAD"}
        )
    return RedirectResponse("/dashboard/", status_code=308)


dashboard_routes: list[BaseRoute] = [
    Route("/", overview, methods=["GET"]),
    Route("/signin", signin_form, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/jobs", jobs, methods=["GET"]),
    Route("/jobs/{event_id}", job_detail, methods=["GET"]),
    Route("/dead", dead_letters, methods=["GET"]),
    *actions.page_routes,
    Route("/budget", budget, methods=["GET"]),
    Route("/tenants", tenants, methods=["GET"]),
    Route("/workers", workers, methods=["GET"]),
    Route("/reactions", reactions, methods=["GET"]),
    Route("/audit", audit, methods=["GET"]),
    Route("/live", live.stream, methods=["GET"]),
    Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    # Last: what no route above takes gets an HTML 405 or 404 page, not the API's JSON.
    Route("/{path:path}", not_routed, methods=ANY_METHOD),
]

routes: list[BaseRoute] = [
    Route("/dashboard", to_index, methods=ANY_METHOD),
    Mount("/dashboard", routes=dashboard_routes),
]
