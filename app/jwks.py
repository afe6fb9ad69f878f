"""A cached, rate-limited JWKS client on an injected ``httpx.AsyncClient``.

The key set is cached for ``ttl`` seconds. A ``kid`` that is not in the cache forces a refresh,
because the signer may have rotated its keys, but at most once per ``min_refresh_interval``
and never twice at the same time (one lock, one fetch): a flood of made-up ``kid`` values costs
the JWKS host at most one request per interval. An unknown ``kid`` whose refresh is held back
by that interval is answered "retry later" (503), since the signer may have just rotated; one
missing from a key set fetched for it is refused (401). When the host is down or slow the last
good key set keeps serving the keys it knows; anything that needs the host raises
:class:`~app.errors.UpstreamUnavailable` (503, so the caller retries), never a 401.

A document that cannot be used (not JSON, nested past what the parser takes, no usable signing
key) is a failure of the host like any other: it is recorded, the last good key set keeps
serving, and a request it leaves without a key is answered 503. An entry that cannot be made a
key (a field of the wrong type, bad key material) is skipped; the set's other keys are kept.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt
import structlog

from app.errors import UpstreamUnavailable

DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_MIN_REFRESH_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 2.0
# A key set is a few kilobytes; more is not one.
MAX_JWKS_BYTES = 256 * 1024

log = structlog.get_logger("app.jwks")


def parse_jwks(document: Any, algorithm: str = "RS256") -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS document by ``kid``; other entries are skipped."""
    entries = document.get("keys") if isinstance(document, dict) else None
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries if isinstance(entries, list) else []:
        found = _signing_key(entry, algorithm)
        if found is not None:
            keys[found[0]] = found[1]
    return keys


def _signing_key(entry: Any, algorithm: str) -> tuple[str, jwt.PyJWK] | None:
    """``(kid, key)`` of one JWKS entry, or None when it is not a signing key this can use.

    ``kid``, ``kty``, ``alg`` and ``use`` must be strings where present (a list or an object in
    their place is not a key, and PyJWT would fail on it with a TypeError).
    """
    if not isinstance(entry, dict):
        return None
    kid, kty = entry.get("kid"), entry.get("kty")
    alg, use = entry.get("alg", algorithm), entry.get("use", "sig")
    if not all(isinstance(value, str) for value in (kid, kty, alg, use)) or use != "sig":
        return None
    try:
        return str(kid), jwt.PyJWK(entry, algorithm=str(alg))
    except Exception:  # bad key material, an unknown algorithm: this entry is no key
        return None


def _read_jwks(body: bytes) -> dict[str, jwt.PyJWK]:
    """The keys of a downloaded document; :class:`_BadJwks` when it gives none."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json takes
        raise _BadJwks("not JSON") from None
    keys = parse_jwks(document)
    if not keys:
        raise _BadJwks("no usable signing keys")
    return keys


class JwksClient:
    """Keys of one JWKS URL, fetched on demand and cached."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        min_refresh_interval: float = DEFAULT_MIN_REFRESH_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.url = url
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failure: str | None = None
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str) -> Mapping[str, jwt.PyJWK]:
        """The current key set, refreshed first if it is stale or lacks ``kid`` (rate-limited)."""
        if kid in self._keys and not self._stale():
            return self._keys
        arrived = self.clock()
        async with self._lock:
            if self._should_fetch(kid):
                await self._fetch()
            # Fetched for this request: here, or by another while this one waited for the lock.
            fetched = self._attempted_at is not None and self._attempted_at >= arrived
            if kid not in self._keys and self._last_failure is not None:
                raise UpstreamUnavailable(
                    "jwks_unavailable", f"the Forge key server is unavailable: {self._last_failure}"
                )
            if kid not in self._keys and not fetched:
                # A key the signer may have just rotated in, while the refresh it calls for is
                # held back by the rate limit: "retry soon" (503), not a refusal that makes the
                # sender drop the event. A kid missing from a set fetched for it is refused.
                wait = self.min_refresh_interval - (self.clock() - (self._attempted_at or 0.0))
                raise UpstreamUnavailable(
                    "jwks_refresh_pending",
                    f"unknown key id; the key set may be refreshed again in {max(wait, 0):.0f} s",
                )
            return self._keys

    def _stale(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.ttl

    def _should_fetch(self, kid: str) -> bool:
        if self._attempted_at is None:
            return True
        since = self.clock() - self._attempted_at
        if since < self.min_refresh_interval:
            return False
        return kid not in self._keys or self._stale()

    async def _fetch(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            # One bound for the whole fetch: httpx's timeout is per step, so a host trickling
            # its answer could hold every Forge request waiting on this lock for much longer.
            keys = _read_jwks(await asyncio.wait_for(self._download(), self.timeout))
        except (httpx.TimeoutException, TimeoutError):
            self._failed("timed out")
        except httpx.HTTPError as exc:
            self._failed(type(exc).__name__)
        except _BadJwks as exc:
            self._failed(str(exc))
        except Exception as exc:  # whatever else the host's answer raised: unavailable too
            self._failed(f"unusable answer ({type(exc).__name__})")
        else:
            self._keys = keys
            self._fetched_at = self._attempted_at
            self._last_failure = None

    def _failed(self, reason: str) -> None:
        """Record a failed refresh; the last good key set (if any) keeps serving."""
        self._last_failure = reason
        log.warning(
            "forge key set refresh failed", url=self.url, reason=reason, keys=len(self._keys)
        )

    async def _download(self) -> bytes:
        headers = {"Accept": "application/json"}
        async with self.http.stream("GET", self.url, timeout=self.timeout, headers=headers) as resp:
            if resp.status_code != 200:
                raise _BadJwks(f"HTTP {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise _BadJwks(f"larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)


class _BadJwks(Exception):
    pass
