"""Connect webhook ingest and the descriptor.

One URL per event (``/connect/webhooks/<event>``): the body does not name its event. The hot
path is: token -> tenant (in-memory cache) -> HS256 + qsh check -> bounded body -> event ->
``queue.put`` (one Redis round trip, per-minute counters included) -> 204. Nothing is
acknowledged before it is stored.

The webhook is a raw ASGI endpoint: it reads the three headers it needs from the scope and
answers 204 itself, without building a ``Request``. The app (:class:`app.main.ReactorApp`)
hands webhook paths straight to :func:`serve`, past Starlette's middleware, router and
exception handlers: :func:`serve` answers refusals with the same JSON error bodies, adds the
same security headers (:mod:`app.web.security`) and answers an unexpected error with the same
500 before letting it reach the server's log. The :class:`~starlette.routing.Route` stays for
the paths the app does not short-cut (an app mounted under a ``root_path``); there refusals are
raised and the app's handlers answer them. Authentication comes first: a request without a
valid token gets 401 whatever its method or body, and its body is never read.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from app import ingest
from app.atlassian.connect_jwt import extract_token
from app.atlassian.events import CONNECT_EVENTS, from_connect
from app.atlassian.verified_tokens import VerifiedTokens
from app.descriptor import build_descriptor
from app.errors import IngestError, VerificationError
from app.queue import EventQueue
from app.settings import Settings
from app.tenants import TenantStore
from app.web.connect_auth import (
    ANY_METHOD,
    log_rejection,
    raw_target,
    verify_request,
    verify_webhook,
)
from app.web.responses import error_response, refusal_response, server_error_response
from app.web.security import PLAIN_HEADERS, PLAIN_HEADERS_HTTPS, SecurityHeaders

PREFIX = "/connect/webhooks/"


def event_in_path(path: str) -> str | None:
    """What follows the webhook prefix, else None.

    Every path under the prefix is the webhook's, whatever follows (a trailing slash, more
    segments): authentication comes first (401 without a valid token, never a redirect), then
    a name that is not a subscribed event is 404.
    """
    if path.startswith(PREFIX):
        name = path[len(PREFIX) :]
        if name:
            return name
    return None


async def serve(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    """The webhook of event ``name``, answered entirely here (refusals and errors included).

    The response carries the headers :class:`~app.web.security.SecurityHeaders` would add.
    """
    started = False
    try:
        hot = context_of(scope["app"])
        counted = hot.counted
        counted.received.inc()
        try:
            refusal = await _ingest(hot, scope, receive, name)
        except VerificationError as exc:
            log_rejection(scope, exc)
            await counted.reject(exc.code)
            response = refusal_response(exc)
        except IngestError as exc:
            await counted.reject(exc.code)
            response = refusal_response(exc)
        else:
            if refusal is None:
                https = scope.get("scheme") == "https"
                headers = PLAIN_HEADERS_HTTPS if https else PLAIN_HEADERS
                started = True
                await send({"type": "http.response.start", "status": 204, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            await counted.reject(refusal[1])
            response = error_response(*refusal)
        started = True
        await SecurityHeaders(response)(scope, receive, send)
    except Exception:
        # As Starlette's ServerErrorMiddleware does for every other route: a 500 if nothing
        # was sent yet, then the error goes on to the server, which logs it.
        if not started:
            await SecurityHeaders(server_error_response())(scope, receive, send)
        raise


class ConnectWebhook:
    """``/connect/webhooks/{event}`` as a raw ASGI app: verify, check, normalise, store, 204."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = context_of(scope["app"])
        counted = hot.counted
        counted.received.inc()
        try:
            refusal = await _ingest(hot, scope, receive, scope["path_params"]["event"])
        except VerificationError as exc:
            log_rejection(scope, exc)
            await counted.reject(exc.code)
            raise
        except IngestError as exc:
            await counted.reject(exc.code)
            raise
        if refusal is not None:
            await counted.reject(refusal[1])
            await error_response(*refusal)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class WebhookContext:
    """What the webhook uses from ``app.state``, read once per app start.

    A ``State`` attribute costs about a microsecond to read (a failed ordinary lookup before
    its ``__getattr__``); the hot path reads these plain slots instead. The app
    (:class:`app.main.ReactorApp`) drops its context when its lifespan starts and ends.
    """

    __slots__ = ("counted", "queue", "settings", "tenants", "verified")

    def __init__(self, state: Any) -> None:
        self.settings: Settings = state.settings
        self.tenants: TenantStore = state.tenants
        self.queue: EventQueue = state.queue
        self.counted = ingest.counters(state, "connect")
        self.verified = VerifiedTokens()


def context_of(app: Any) -> WebhookContext:
    """The app's :class:`WebhookContext`, made on first use and kept on the app.

    Kept so that the verified-token cache lives as long as the app's lifespan (which drops
    the context when it starts and ends), on the short-cut path and the routed one alike.
    """
    hot: WebhookContext | None = getattr(app, "webhook_context", None)
    if hot is None:
        hot = app.webhook_context = WebhookContext(app.state)
    return hot


async def _ingest(
    hot: WebhookContext, scope: Scope, receive: Receive, name: str
) -> tuple[int, str, str] | None:
    """Store the webhook, or give the (status, code, detail) of a refusal that is not raised."""
    settings = hot.settings
    authorization = content_type = length = None
    for header, value in scope["headers"]:
        if header == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif header == b"content-type" and content_type is None:
            content_type = value
        elif header == b"content-length" and length is None:
            length = value
    token = extract_token(authorization, scope["query_string"].decode("latin-1"))
    method = scope["method"]
    target = raw_target(scope)
    if method == "POST" and name in CONNECT_EVENTS:
        tenant = await verify_webhook(
            settings, hot.tenants, hot.verified, token=token, method=method, target=target
        )
    else:  # refused below once authenticated: nothing of it is remembered
        tenant, _ = await verify_request(
            settings, hot.tenants, token=token, method=method, target=target
        )
    if method != "POST":
        return 405, "method_not_allowed", "webhooks are POST only"
    if name not in CONNECT_EVENTS:
        return 404, "unknown_event", "this app does not subscribe to that event"
    ingest.check_media_type(content_type)
    limit = settings.max_body_bytes
    ingest.check_declared_length(length, limit)
    raw = await ingest.receive_body(receive, limit)
    event = from_connect(tenant.client_key, name, ingest.parse_json(raw), raw)
    await ingest.store(hot.queue, event, hot.counted)
    return None


async def descriptor(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    return JSONResponse(build_descriptor(base_url=settings.base_url, app_key=settings.app_key))


routes = [
    # ``path``: a trailing slash or more segments reach the webhook too (401 first, then 404),
    # never Starlette's redirect, which would answer before authentication.
    Route("/connect/webhooks/{event:path}", ConnectWebhook(), methods=ANY_METHOD),
    Route("/atlassian-connect.json", descriptor, methods=["GET", "HEAD"]),
]
