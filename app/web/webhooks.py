"""Connect webhook ingest and the descriptor.

One URL per event (``/connect/webhooks/<event>``): the body does not name its event. The hot
path is: token -> tenant (in-memory cache) -> HS256 + qsh check -> bounded body -> event ->
``queue.put`` (one Redis round trip, per-minute counters included) -> 204. Nothing is
acknowledged before it is stored.

The webhook route is a raw ASGI endpoint (still a :class:`~starlette.routing.Route`): it reads
the three headers it needs from the scope and answers 204 itself, without building a
``Request``. Refusals are raised as the usual exceptions, so the app's handlers answer them
with the JSON error body. Authentication comes first: a request without a valid token gets
401 whatever its method or body, and its body is never read.
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
from app.descriptor import build_descriptor
from app.errors import IngestError, VerificationError
from app.settings import Settings
from app.web.connect_auth import ANY_METHOD, log_rejection, raw_target, verify_request
from app.web.responses import error_response


class ConnectWebhook:
    """``/connect/webhooks/{event}`` as a raw ASGI app: verify, check, normalise, store, 204."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        counted = ingest.counters(state, "connect")
        counted.received.inc()
        try:
            refusal = await _ingest(state, counted, scope, receive)
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


async def _ingest(
    state: Any, counted: ingest.Counters, scope: Scope, receive: Receive
) -> tuple[int, str, str] | None:
    """Store the webhook, or give the (status, code, detail) of a refusal that is not raised."""
    settings: Settings = state.settings
    authorization = content_type = length = None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"content-length" and length is None:
            length = value
    token = extract_token(authorization, scope["query_string"].decode("latin-1"))
    method = scope["method"]
    tenant, _ = await verify_request(
        settings, state.tenants, token=token, method=method, target=raw_target(scope)
    )
    if method != "POST":
        return 405, "method_not_allowed", "webhooks are POST only"
    name = scope["path_params"]["event"]
    if name not in CONNECT_EVENTS:
        return 404, "unknown_event", "this app does not subscribe to that event"
    ingest.check_media_type(content_type)
    limit = settings.max_body_bytes
    ingest.check_declared_length(length, limit)
    raw = await ingest.receive_body(receive, limit)
    event = from_connect(tenant.client_key, name, ingest.parse_json(raw), raw)
    await ingest.store(state.queue, event, counted)
    return None


async def descriptor(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    return JSONResponse(build_descriptor(base_url=settings.base_url, app_key=settings.app_key))


routes = [
    Route("/connect/webhooks/{event}", ConnectWebhook(), methods=ANY_METHOD),
    Route("/atlassian-connect.json", descriptor, methods=["GET", "HEAD"]),
]
