"""Security headers on every response, as Atlassian's cloud app requirements ask.

Pure ASGI middleware (no per-request object allocation beyond the header list) so it costs
next to nothing on the ingest hot path.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]
NO_STORE = (b"cache-control", b"no-cache, no-store, must-revalidate")
STATIC_CACHE = (b"cache-control", b"public, max-age=3600")
# What SecurityHeaders adds to a response of a non-static path that sets no headers itself.
PLAIN_HEADERS = [*BASE_HEADERS, NO_STORE]
PLAIN_HEADERS_HTTPS = [*PLAIN_HEADERS, HSTS]


class SecurityHeaders:
    """Adds nosniff, Referrer-Policy, Cache-Control and (over https) HSTS to every response.

    Paths under ``static_prefix`` may be cached; everything else is ``no-cache, no-store``.
    """

    def __init__(self, app: ASGIApp, static_prefix: str = "/dashboard/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        static = scope["path"].startswith(self.static_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = (
                    [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
                    if not static
                    else list(message.get("headers", []))
                )
                headers.extend(BASE_HEADERS)
                if not static:
                    headers.append(NO_STORE)
                elif not any(h[0].lower() == b"cache-control" for h in headers):
                    headers.append(STATIC_CACHE)
                if https:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
