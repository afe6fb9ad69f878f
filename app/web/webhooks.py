"""Connect webhook ingest and the descriptor.

One URL per event (``/connect/webhooks/<event>``): the body does not name its event. The hot
path is: token -> tenant (in-memory cache) -> HS256 + qsh check -> body -> event ->
``queue.put`` (one Redis round trip) -> 204. Nothing is acknowledged before it is stored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.atlassian.events import CONNECT_EVENTS, from_connect
from app.descriptor import build_descriptor
from app.errors import VerificationError
from app.settings import Settings
from app.web.connect_auth import ANY_METHOD, authenticate, log_rejection, read_json
from app.web.responses import error_response


async def receive(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        tenant, _ = await authenticate(request)
    except VerificationError as exc:
        log_rejection(request, exc)
        raise
    if request.method != "POST":
        return error_response(405, "method_not_allowed", "webhooks are POST only")
    name = request.path_params["event"]
    if name not in CONNECT_EVENTS:
        return error_response(404, "unknown_event", "this app does not subscribe to that event")
    body = await read_json(request, settings.max_body_bytes)
    event = from_connect(tenant.client_key, name, body)
    await request.app.state.queue.put(event)
    return Response(status_code=204)


async def descriptor(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    return JSONResponse(build_descriptor(base_url=settings.base_url, app_key=settings.app_key))


routes = [
    Route("/connect/webhooks/{event}", receive, methods=ANY_METHOD),
    Route("/atlassian-connect.json", descriptor, methods=["GET", "HEAD"]),
]
