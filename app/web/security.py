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
# Content-Security-Policy. Pages: their own scripts, styles and live stream only (the
# dashboard has no inline script, event handler or style attribute; its charts are SVG built
# in script), forms posted to this origin only, never framed. Anything else (JSON, server-sent
# events, static files, redirects) loads nothing and is never framed.
CSP = b"content-security-policy"
PAGE_POLICY = (
    CSP,
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
)
STRICT_POLICY = (CSP, b"default-src 'none'; frame-ancestors 'none'")
NO_STORE = (b"cache-control", b"no-cache, no-store, must-revalidate")
STATIC_CACHE = (b"cache-control", b"public, max-age=3600")
# What SecurityHeaders adds to a response of a non-static path that sets no headers itself.
PLAIN_HEADERS = [*BASE_HEADERS, NO_STORE, STRICT_POLICY]
PLAIN_HEADERS_HTTPS = [*PLAIN_HEADERS, HSTS]


def cacheable(status: int) -> bool:
    """Whether a static file's answer may be kept by caches: a file (2xx) or "unchanged" (304),
    never an error (a 404 cached during a deploy would hide the new file for an hour)."""
    return 200 <= status < 300 or status == 304


def with_headers(
    headers: list[tuple[bytes, bytes]], *, static: bool, https: bool
) -> list[tuple[bytes, bytes]]:
    """``headers`` and the security headers; a cacheable static answer keeps its own
    Cache-Control (else :data:`STATIC_CACHE`), every other answer is ``no-store``. An answer
    that sets no Content-Security-Policy gets :data:`PAGE_POLICY` if it is HTML, else
    :data:`STRICT_POLICY`."""
    if static:
        out = [*headers, *BASE_HEADERS]
        if not any(h[0].lower() == b"cache-control" for h in headers):
            out.append(STATIC_CACHE)
    else:
        out = [h for h in headers if h[0].lower() != b"cache-control"]
        out.extend(BASE_HEADERS)
        out.append(NO_STORE)
    policy = _policy(headers)
    if policy is not None:
        out.append(policy)
    if https:
        out.append(HSTS)
    return out


def _policy(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes] | None:
    """The Content-Security-Policy to add: none when the answer sets its own."""
    html = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == CSP:
            return None
        if lowered == b"content-type":
            html = value.lower().startswith(b"text/html")
    return PAGE_POLICY if html else STRICT_POLICY


class SecurityHeaders:
    """Adds nosniff, X-Frame-Options, Referrer-Policy, Content-Security-Policy, Cache-Control
    and (over https) HSTS to every response.

    Successful answers of paths under ``static_prefix`` may be cached; everything else
    (static errors included) is ``no-cache, no-store``.
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
                message["headers"] = with_headers(
                    list(message.get("headers", [])),
                    static=static and cacheable(message["status"]),
                    https=https,
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)
