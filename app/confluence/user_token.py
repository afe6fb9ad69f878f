"""Act-as-user access tokens (Connect OAuth 2.0 JWT bearer grant), cached until near expiry.

The assertion is built by :func:`app.atlassian.connect_jwt.build_user_assertion` (signed with
the tenant's shared secret); this module exchanges it at the authorization server and keeps
the access token per (tenant, user, scopes) until ``margin`` seconds before it expires. One
fetch per key at a time: concurrent jobs for the same user share it. The app's descriptor must
ask for the ``ACT_AS_USER`` scope for the grant to succeed.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from app.atlassian.connect_jwt import build_user_assertion
from app.errors import PermanentFailure, TransientFailure

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_CACHED = 1000


@dataclass(frozen=True)
class UserGrant:
    """What the grant needs from a tenant; ``shared_secret`` stays out of ``repr``."""

    client_key: str
    oauth_client_id: str
    base_url: str
    shared_secret: str = field(repr=False)


class UserTokens:
    """Fetches and caches act-as-user access tokens over an injected ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        auth_server: str,
        timeout: float = 5.0,
        margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.token_url = auth_server.rstrip("/") + "/oauth2/token"
        self.timeout = timeout
        self.margin = margin
        self.clock = clock
        self.fetches = 0
        self._cache: OrderedDict[tuple[str, str, str], tuple[float, str]] = OrderedDict()
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def token(self, grant: UserGrant, account_id: str, scopes: Sequence[str] = ()) -> str:
        """A bearer token acting as ``account_id`` on ``grant``'s site."""
        key = (grant.client_key, account_id, " ".join(sorted(s.upper() for s in scopes)))
        cached = self._fresh(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                cached = self._fresh(key)
                if cached is not None:
                    return cached
                token, expires_in = await self._fetch(grant, account_id, key[2])
                self._cache[key] = (self.clock() + expires_in - self.margin, token)
                while len(self._cache) > MAX_CACHED:
                    old, _ = self._cache.popitem(last=False)
                    self._locks.pop(old, None)
                return token
        finally:
            if key not in self._cache and not lock.locked():
                self._locks.pop(key, None)

    def provider(
        self, grant: UserGrant, account_id: str, scopes: Sequence[str] = ()
    ) -> Callable[[], Awaitable[str]]:
        """A token provider for ``BearerAuth``: each call returns a fresh-enough token."""

        async def provide() -> str:
            return await self.token(grant, account_id, scopes)

        return provide

    def _fresh(self, key: tuple[str, str, str]) -> str | None:
        entry = self._cache.get(key)
        if entry is None or entry[0] <= self.clock():
            return None
        self._cache.move_to_end(key)
        return entry[1]

    async def _fetch(self, grant: UserGrant, account_id: str, scope: str) -> tuple[str, float]:
        self.fetches += 1
        assertion = build_user_assertion(
            oauth_client_id=grant.oauth_client_id,
            secret=grant.shared_secret,
            account_id=account_id,
            tenant_base_url=grant.base_url,
            now=int(self.clock()),
        )
        form = {"grant_type": GRANT_TYPE, "assertion": assertion}
        if scope:
            form["scope"] = scope
        try:
            resp = await self.http.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise TransientFailure(f"act-as-user token: {type(exc).__name__}") from exc
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientFailure(f"act-as-user token: authorization server {resp.status_code}")
        if resp.status_code != 200:
            raise PermanentFailure(f"act-as-user token refused ({resp.status_code})")
        try:
            body = resp.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in", 900))
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientFailure("act-as-user token: unreadable answer") from exc
        if not isinstance(token, str) or not token:
            raise TransientFailure("act-as-user token: no access_token in the answer")
        return token, expires_in
