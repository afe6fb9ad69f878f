"""Operator sign-in: token check, signed session cookie, CSRF tokens, and the guards.

An operator signs in with one of ``settings.dashboard_tokens`` (compared in constant time);
the session is a cookie ``<payload>.<hmac>`` signed with a key derived from the first
``REACTOR_SECRET_KEY`` (or, without one, from the operator tokens themselves). It holds a
random session id, a short fingerprint of the token used (so removing a token ends its
sessions, and the audit log can name who acted without storing the token) and an expiry.
Signing out revokes the session id in Redis for the rest of its lifetime, so a copy of the
cookie taken before stops working too.
After :data:`MAX_FAILURES` wrong tokens from one address within the window, every further
wrong token from it (sign-in form, or ``Authorization: Bearer`` on a page or the API) answers
429 until the window ends; each wrong one counted is recorded among the refused sign-ins of the
audit log. A correct token is always accepted, throttled or not: an attacker sharing an address with
the operators (behind a load balancer they all share one) cannot lock them out. That leaves the
token's length as the defence against guessing, so operator tokens must be long and random
(``reactor dev`` makes 32 characters from 24 random bytes).

Form bodies are read with a bound (:data:`MAX_FORM_BYTES`): a declared ``Content-Length`` over
it is refused with 413 before reading, a streamed body as soon as it passes it.

Every state-changing request carries a CSRF token: forms a hidden ``csrf`` field, the API an
``X-CSRF-Token`` header; it is an HMAC of the session id. The CLI authenticates with
``Authorization: Bearer <token>`` instead; no cookie is involved, so no CSRF token is needed.

Pages answer their refusals (stale form 403, throttled 429, Redis down 503, 413/415) with the
HTML error page (:func:`app.dashboard.routes.error_page`, same status and ``Retry-After``); the
API and the live stream answer JSON. A form sent without a valid session goes to sign-in and
back to the form's page (:func:`form_page`), never to the address it posted to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.dashboard.audit import AuditLog
from app.errors import IngestError, UnsupportedMediaType
from app.ingest import media_type, read_body
from app.settings import Settings
from app.web.responses import error_response, refusal_response

log = structlog.get_logger("app.dashboard.auth")

SESSION_COOKIE = "reactor_session"
SIGNIN_COOKIE = "reactor_signin"
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 64 * 1024
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
SIGNIN_PATH = "/dashboard/signin"
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 300
HOME = "/dashboard/"
# The page of each form that posts elsewhere (see :func:`form_page`).
FORM_PAGES = {
    "/dashboard/dead/retry": "/dashboard/dead",
    "/dashboard/dead/discard": "/dashboard/dead",
    "/dashboard/signin": SIGNIN_PATH,
}

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is acting: ``id`` is a fingerprint of the token, never the token itself."""

    id: str
    via: str  # "session" or "bearer"
    session: str = ""


def token_id(token: str) -> str:
    return "op-" + hashlib.sha256(token.encode()).hexdigest()[:10]


def match_token(candidate: str, tokens: list[str]) -> str | None:
    """The configured token equal to ``candidate``, compared in constant time against all."""
    found = None
    given = candidate.encode()
    for token in tokens:
        if hmac.compare_digest(given, token.encode()):
            found = token
    return found if candidate else None


def signing_key(settings: Settings) -> bytes:
    material = (
        settings.secret_keys[0]
        if settings.secret_keys
        else "\x1f".join(sorted(settings.dashboard_tokens))
    )
    return hmac.new(material.encode(), b"reactor dashboard session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def unsign(key: bytes, value: str, now: float) -> dict[str, Any] | None:
    """The payload of a cookie we signed and that has not expired, else None."""
    body, _, mac = value.partition(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not mac or not hmac.compare_digest(mac.encode(), expected.encode()):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(payload, dict) or float(payload.get("exp", 0)) < now:
        return None
    return payload


def csrf_token(key: bytes, session: str) -> str:
    return hmac.new(key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def current_operator(request: Request) -> Operator | None:
    """The signed-in operator of this request (bearer token or session cookie), if any."""
    settings = _settings(request)
    tokens = settings.dashboard_tokens
    if not tokens:
        return None
    given = bearer_token(request)
    if given is not None:
        token = match_token(given, tokens)
        return Operator(token_id(token), "bearer") if token else None
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    payload = unsign(signing_key(settings), cookie, time.time())
    if payload is None or payload.get("op") not in {token_id(t) for t in tokens}:
        return None
    return Operator(str(payload["op"]), "session", str(payload.get("sid", "")))


def _revoked_key(request: Request, session: str) -> str:
    return f"{_settings(request).redis_prefix}dashboard:signed-out:{session}"


async def signed_in(request: Request) -> Operator | None:
    """:func:`current_operator`, unless its session was signed out (kept in Redis for the
    session's lifetime). With Redis unreachable the check is skipped: the dashboard stays
    usable for the outage it is needed in, and its actions fail on Redis anyway."""
    operator = current_operator(request)
    if operator is None or operator.via != "session" or not operator.session:
        return operator
    try:
        if await request.app.state.redis.exists(_revoked_key(request, operator.session)):
            return None
    except (RedisError, OSError):
        log.warning("dashboard session revocation not checked: redis unavailable")
    return operator


async def revoke(request: Request, operator: Operator) -> None:
    """Sign a session out for good: its cookie, wherever a copy of it is, no longer works."""
    if operator.via == "session" and operator.session:
        key = _revoked_key(request, operator.session)
        await request.app.state.redis.set(key, "1", ex=SESSION_SECONDS)


def csrf_ok(request: Request, operator: Operator, supplied: str | None) -> bool:
    if operator.via == "bearer":
        return True
    expected = csrf_token(signing_key(_settings(request)), operator.session)
    return bool(supplied) and hmac.compare_digest(str(supplied).encode(), expected.encode())


def csrf_for(request: Request) -> str:
    operator: Operator | None = getattr(request.state, "operator", None)
    if operator is None or operator.via != "session":
        return ""
    return csrf_token(signing_key(_settings(request)), operator.session)


async def read_form(request: Request) -> dict[str, list[str]]:
    """A urlencoded form body (we do not accept multipart).

    Raises :class:`~app.errors.UnsupportedMediaType` (415) for any other declared media type
    (a body without one is read as a form), and :class:`~app.errors.PayloadTooLarge` (413)
    when the declared length is over :data:`MAX_FORM_BYTES`, before reading, or as soon as the
    streamed body passes it.
    """
    if media_type(request.headers.get("content-type") or FORM_MEDIA_TYPE) != FORM_MEDIA_TYPE:
        raise UnsupportedMediaType(f"the form must be sent as {FORM_MEDIA_TYPE}")
    body = await read_body(request, MAX_FORM_BYTES)
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def throttled(request: Request) -> bool:
    """True once this client has failed to sign in :data:`MAX_FAILURES` times lately.

    Ask only after a wrong token: a right one is accepted whatever this says.
    """
    key = f"{_settings(request).redis_prefix}signin-failures:{_client(request)}"
    count = await request.app.state.redis.get(key)
    return count is not None and int(count) >= MAX_FAILURES


async def note_failure(request: Request) -> None:
    key = f"{_settings(request).redis_prefix}signin-failures:{_client(request)}"
    async with request.app.state.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, FAILURE_WINDOW_SECONDS, nx=True)
        await pipe.execute()


async def wrong_token(request: Request, via: str, *, page: bool = False) -> Response | None:
    """A wrong operator token (``via``: ``form`` or ``bearer``): 429 (an HTML page for a
    ``page``) once this address is throttled, else None after counting it and recording it
    among the refused sign-ins (never among the operators' actions, see :mod:`.audit`)."""
    if await throttled(request):
        return too_many(request, page=page)
    await note_failure(request)
    await AuditLog(request.app.state.redis, _settings(request).redis_prefix).record_refused(
        via, _client(request)
    )
    return None


def too_many(request: Request, *, page: bool = False) -> Response:
    return refused(
        request,
        429,
        "too_many_attempts",
        "too many failed sign-ins from this address; wait a few minutes",
        {"Retry-After": str(FAILURE_WINDOW_SECONDS)},
        page=page,
    )


def refused(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    *,
    page: bool,
) -> Response:
    """An error answer: the JSON error body for the API and the live stream, the HTML error
    page (same status and headers) for the pages (``page``)."""
    if not page:
        return error_response(status, code, detail, headers)
    from app.dashboard.routes import error_page  # the pages' templates live with the routes

    return error_page(request, status, code, detail, headers)


def bearer_token(request: Request) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, if it sends one."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _bearer_given(request: Request) -> bool:
    """Whether the request offers an operator token (``Authorization: Bearer``); another
    scheme (a proxy's ``Basic``, say) is not a guess at the token and is not counted."""
    return bearer_token(request) is not None


async def _refuse(request: Request) -> Response:
    if _bearer_given(request):
        answer = await wrong_token(request, "bearer")
        if answer is not None:
            return answer
    return error_response(
        401,
        "unauthorized",
        "sign in at /dashboard or send Authorization: Bearer <operator token>",
        {"WWW-Authenticate": 'Bearer realm="reactor"'},
    )


async def _unless_redis_down(endpoint: Endpoint, request: Request, *, page: bool) -> Response:
    """The endpoint's answer; 400/413/415 for unusable input it refused (an ``IngestError``);
    503 when Redis (where everything shown lives) is down. For a page (``page``) these
    answers are the HTML error page, else JSON."""
    try:
        return await endpoint(request)
    except IngestError as exc:
        return _refused_input(request, exc, page=page)
    except (RedisError, OSError):
        return refused(
            request,
            503,
            "redis_unavailable",
            "Redis does not answer; retry shortly",
            {"Retry-After": "5"},
            page=page,
        )


def _refused_input(request: Request, exc: IngestError, *, page: bool) -> Response:
    answer = refusal_response(exc)
    if not page:
        return answer
    kept = {k: v for k, v in answer.headers.items() if k.lower() == "retry-after"}
    return refused(request, exc.status, exc.code, exc.detail, kept, page=True)


async def unauthorized(request: Request) -> Response:
    """The answer to a request with no valid sign-in: 401, or 429 for a wrong bearer token from
    an address that sent :data:`MAX_FAILURES` wrong ones lately (each wrong one is counted and
    audited); 503 when Redis, which counts them, is down. Always JSON (the API, the stream)."""
    return await _unless_redis_down(_refuse, request, page=False)


def public(endpoint: Endpoint) -> Endpoint:
    """Guard for the page that needs no sign-in (the sign-in form's POST): 413 for an oversized
    body (see :func:`read_form`), 503 when Redis is down, instead of a 500; as HTML pages."""

    async def guarded(request: Request) -> Response:
        return await _unless_redis_down(endpoint, request, page=True)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded


def form_page(path: str) -> str:
    """The page whose form posts to ``path``: where an operator goes back to (after signing in
    again, from an error page) instead of an address that only takes a POST; the Overview
    when no page is known."""
    return FORM_PAGES.get(path.rstrip("/") or "/", HOME)


async def _to_sign_in(request: Request) -> Response:
    """A page asked without a valid sign-in: off to the sign-in form, back here after (a form
    sent without one: back to the form's page, see :func:`form_page`). A wrong token in an
    ``Authorization`` header is counted and audited first, as the API does (429 once the
    address is throttled): pages are no way round the throttle."""
    if _bearer_given(request):
        answer = await wrong_token(request, "bearer", page=True)
        if answer is not None:
            return answer
    if request.method in ("GET", "HEAD"):
        target = request.url.path + ("?" + request.url.query if request.url.query else "")
    else:
        target = form_page(request.url.path)
    return RedirectResponse(f"{SIGNIN_PATH}?next={quote(target)}", status_code=303)


def page(endpoint: Endpoint) -> Endpoint:
    """Guard for HTML pages: sign-in first (see :func:`_to_sign_in`), then the page; POSTs
    need the form's CSRF token. Refusals are HTML error pages."""

    async def guarded(request: Request) -> Response:
        operator = await signed_in(request)
        if operator is None:
            return await _unless_redis_down(_to_sign_in, request, page=True)
        request.state.operator = operator
        if request.method == "POST":
            try:
                form = await read_form(request)
            except IngestError as exc:
                return _refused_input(request, exc, page=True)
            request.state.form = form
            if not csrf_ok(request, operator, first(form, "csrf")):
                return refused(
                    request, 403, "csrf_failed", "the form is stale; reload the page", page=True
                )
        return await _unless_redis_down(endpoint, request, page=True)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded


def api(endpoint: Endpoint) -> Endpoint:
    """Guard for the JSON API: 401 without sign-in, 403 on a cookie POST without CSRF header."""

    async def guarded(request: Request) -> Response:
        operator = await signed_in(request)
        if operator is None:
            return await unauthorized(request)
        request.state.operator = operator
        if request.method not in ("GET", "HEAD") and not csrf_ok(
            request, operator, request.headers.get("x-csrf-token")
        ):
            return error_response(403, "csrf_failed", "missing or wrong X-CSRF-Token header")
        return await _unless_redis_down(endpoint, request, page=False)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded


def new_session(settings: Settings, token: str, now: float) -> str:
    payload = {
        "sid": secrets.token_urlsafe(16),
        "op": token_id(token),
        "exp": now + SESSION_SECONDS,
    }
    return sign(signing_key(settings), payload)


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def safe_next(target: str) -> str:
    """Only local dashboard paths are allowed as a post-sign-in destination."""
    if target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"
