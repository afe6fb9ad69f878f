"""How each request to Confluence is authenticated: one ``httpx.Auth`` per mode.

* :class:`ConnectJWTAuth`: a fresh HS256 Connect token per request, its ``qsh`` bound to the
  method, path (relative to the tenant's base URL, so without ``/wiki``) and query.
* :class:`BearerAuth`: ``Authorization: Bearer``; the token comes from an async provider each
  time, so a Forge app system token (kept fresh by the installation store) or an OAuth 2.0
  access token (refreshed elsewhere) is read at the moment of the call.
* :func:`basic_auth`: email + API token for scripts (HTTP Basic).

Secrets stay out of ``repr`` and out of every log line.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx

from app.atlassian.connect_jwt import encode_connect_token

TokenProvider = Callable[[], Awaitable[str]]


class ConnectJWTAuth(httpx.Auth):
    """Signs each request as the Connect app (``iss`` = app key) for one tenant."""

    def __init__(
        self,
        *,
        app_key: str,
        shared_secret: str,
        base_url: str,
        lifetime: int = 180,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._app_key = app_key
        self._secret = shared_secret
        self._base_url = base_url
        self._lifetime = lifetime
        self._clock = clock

    def __repr__(self) -> str:
        return f"ConnectJWTAuth(app_key={self._app_key!r}, base_url={self._base_url!r})"

    def token_for(self, method: str, url: str) -> str:
        now = int(self._clock()) if self._clock is not None else None
        return encode_connect_token(
            issuer=self._app_key,
            secret=self._secret,
            method=method,
            url=url,
            base_url=self._base_url,
            now=now,
            lifetime=self._lifetime,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = str(request.url.copy_with(fragment=None) if request.url.fragment else request.url)
        request.headers["Authorization"] = f"JWT {self.token_for(request.method, url)}"
        yield request


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` with the token read from ``provider`` per request."""

    def __init__(self, provider: TokenProvider, *, label: str = "bearer") -> None:
        self._provider = provider
        self.label = label

    @classmethod
    def static(cls, token: str, *, label: str = "oauth") -> BearerAuth:
        """A fixed token (an OAuth 2.0 access token a caller refreshes by building a new one)."""

        async def provide() -> str:
            return token

        return cls(provide, label=label)

    def __repr__(self) -> str:
        return f"BearerAuth(label={self.label!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("BearerAuth reads its token asynchronously; use httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._provider()
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def basic_auth(email: str, api_token: str) -> httpx.BasicAuth:
    """Email + API token (scripts only: the token carries the user's full permissions)."""
    return httpx.BasicAuth(email, api_token)
