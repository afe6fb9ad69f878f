"""Public keys of Connect signed installs, fetched from Atlassian's install-keys CDN.

``GET <base>/<kid>`` returns one PEM public key. Keys never change under a given ``kid``, so
they are cached (bounded, least recently used out first). The ``kid`` is checked again here,
so nothing but a plain id ever reaches the URL. A key server that is down, slow or answering
nonsense raises :class:`~app.errors.UpstreamUnavailable` (503: Atlassian retries the install);
a key server that says the key does not exist gives a 401, since the token cannot be valid.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.atlassian.install_token import BadKeyId, is_safe_key_id, load_public_key
from app.crypto import DecryptionError, SecretBox
from app.errors import ConfigError, UpstreamUnavailable
from app.settings import Settings

MAX_KEY_BYTES = 16 * 1024
DEFAULT_CACHE_SIZE = 64
# Atlassian signs installs with a handful of keys, rotated rarely: a few fetches an hour.
DEFAULT_FETCHES_PER_MINUTE = 30
UNKNOWN_KID_SECONDS = 300.0
UNKNOWN_KIDS_KEPT = 1024
KEPT_SECONDS = 90 * 24 * 3600  # a key never changes under its kid; kept while it may be used


class UnknownKeyId(BadKeyId):
    code_name = "unknown_key_id"


class KeyStore(Protocol):
    """Where fetched keys are kept for every process and past restarts (PEM bytes)."""

    async def load(self, kid: str) -> bytes | None: ...

    async def save(self, kid: str, pem: bytes) -> None: ...


class RedisKeyStore:
    """Fetched install keys in Redis (``P install-key:<kid>``), sealed with the app's secret key
    (Fernet): a key planted by someone who can write to Redis would not open. A failing Redis
    is no key found (the key server is asked), and a failing write is skipped."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.prefix = f"{settings.redis_prefix}install-key:"
        self._secret_keys = settings.secret_keys
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(self._secret_keys)
        return self._box

    async def load(self, kid: str) -> bytes | None:
        try:
            sealed = await self.redis.get(self.prefix + kid)
            return None if sealed is None else self.box.decrypt(sealed).encode()
        except (RedisError, OSError, DecryptionError, ConfigError):
            return None

    async def save(self, kid: str, pem: bytes) -> None:
        try:
            sealed = self.box.encrypt(pem.decode())
            await self.redis.set(self.prefix + kid, sealed, ex=KEPT_SECONDS)
        except (RedisError, OSError, ConfigError, UnicodeDecodeError):
            return


class InstallKeys:
    """Signed-install public keys by ``kid`` over an injected ``httpx.AsyncClient``.

    With a ``store``, a key fetched once is found there by every process and after a restart,
    so only a kid this deployment never saw costs a fetch (and counts against the cap).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        timeout: float = 3.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_fetches: int = DEFAULT_FETCHES_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        store: KeyStore | None = None,
    ) -> None:
        self.http = http
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.cache_size = cache_size
        self.max_fetches = max_fetches
        self.clock = clock
        self.fetches = 0
        self._cache: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()  # kid -> when it was asked
        self._fetching: dict[str, asyncio.Future[rsa.RSAPublicKey]] = {}
        self._recent: deque[float] = deque()

    async def get(self, kid: str) -> rsa.RSAPublicKey:
        """The RSA public key named ``kid``, from the cache or the key server.

        Anyone can send an install callback naming any ``kid``: one naming a kid the server
        denied within ``UNKNOWN_KID_SECONDS`` is refused without asking again, callbacks naming
        the same kid share one fetch, and at most ``max_fetches`` fetches start per minute
        (503 beyond: Atlassian retries an install), so the service cannot be used to flood
        the key server.
        """
        if not is_safe_key_id(kid):
            raise BadKeyId("kid contains characters that are not allowed")
        key = self._cache.get(kid)
        if key is not None:
            self._cache.move_to_end(kid)
            return key
        denied = self._unknown.get(kid)
        if denied is not None and self.clock() - denied < UNKNOWN_KID_SECONDS:
            raise UnknownKeyId("the install key server does not know this kid")
        shared = self._fetching.get(kid)
        if shared is None:
            shared = self._fetching[kid] = asyncio.ensure_future(self._fetch_once(kid))
            shared.add_done_callback(_seen)  # its error is seen even if every caller left
        return await asyncio.shield(shared)

    def _admit(self) -> None:
        now = self.clock()
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.max_fetches:
            raise UpstreamUnavailable(
                "install_keys_busy", "too many install key lookups this minute; retry later"
            )
        self._recent.append(now)

    async def _fetch_once(self, kid: str) -> rsa.RSAPublicKey:
        try:
            key = await self._stored(kid)
            if key is None:
                self._admit()
                key = await self._fetch(kid)
                if self.store is not None:
                    await self.store.save(kid, serialize(key))
        except UnknownKeyId:
            self._unknown[kid] = self.clock()
            self._unknown.move_to_end(kid)
            while len(self._unknown) > UNKNOWN_KIDS_KEPT:
                self._unknown.popitem(last=False)
            raise
        finally:
            del self._fetching[kid]
        self._cache[kid] = key
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return key

    async def _stored(self, kid: str) -> rsa.RSAPublicKey | None:
        pem = None if self.store is None else await self.store.load(kid)
        if pem is None:
            return None
        try:
            return load_public_key(pem)
        except ValueError:
            return None

    async def _fetch(self, kid: str) -> rsa.RSAPublicKey:
        self.fetches += 1
        try:
            body, status = await asyncio.wait_for(self._download(kid), self.timeout)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            reason = (
                "timed out"
                if isinstance(exc, TimeoutError | httpx.TimeoutException)
                else ("unreachable")
            )
            raise UpstreamUnavailable(
                "install_keys_unavailable", f"the install key server is {reason}; retry later"
            ) from exc
        if status == 404:
            raise UnknownKeyId("the install key server does not know this kid")
        if status != 200:
            raise UpstreamUnavailable(
                "install_keys_unavailable", f"the install key server answered {status}"
            )
        try:
            return load_public_key(body)
        except ValueError as exc:
            raise UpstreamUnavailable(
                "install_keys_unavailable", "the install key server sent no RSA public key"
            ) from exc

    async def _download(self, kid: str) -> tuple[bytes, int]:
        url = f"{self.base_url}/{kid}"
        timeout = httpx.Timeout(self.timeout)
        async with self.http.stream("GET", url, timeout=timeout, follow_redirects=False) as resp:
            if resp.status_code != 200:
                return b"", resp.status_code
            chunks = bytearray()
            async for chunk in resp.aiter_bytes():
                chunks.extend(chunk)
                if len(chunks) > MAX_KEY_BYTES:
                    return b"", 502
            return bytes(chunks), 200


def _seen(done: asyncio.Future[rsa.RSAPublicKey]) -> None:
    if not done.cancelled():
        done.exception()


def serialize(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
