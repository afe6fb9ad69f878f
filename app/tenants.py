"""Connect tenants in Redis, shared secrets encrypted at rest.

Keys (all under ``settings.redis_prefix``)::

    tenant:client:<clientKey>          hash: the tenant record, ``secret`` Fernet-encrypted
                                       (dropped at uninstall: a reinstall brings a new one)
    tenant:index                       set of every clientKey ever installed
    tenant:installation:<installationId>  string: the clientKey (Forge events find their tenant)

A site uninstalled longer than ``REACTOR_UNINSTALLED_RETENTION_SECONDS`` ago is deleted by the
workers' daily purge (:meth:`TenantStore.purge_uninstalled`): record, index entry and
installation mapping, in one script that checks it is still uninstalled and still that old.

Lifecycle callbacks are applied in the order Atlassian signed them: each write carries the
callback token's ``iat`` and is skipped when the record already holds a later one
(``lifecycle_iat``), so a late retry or a replay of an older callback cannot roll back a secret
or a status. An ``installed`` callback (an upgrade re-sends it) leaves a disabled site disabled.

Decrypted tenants are cached in memory for a few seconds (bounded, least recently used out
first), so the webhook hot path neither decrypts nor reads Redis on every request. Writes made
by this process update its cache at once; other processes see them within the cache lifetime.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.crypto import DecryptionError, SecretBox
from app.errors import UpstreamUnavailable
from app.settings import Settings

Status = Literal["installed", "uninstalled", "enabled", "disabled"]
STATUSES: tuple[Status, ...] = ("installed", "uninstalled", "enabled", "disabled")
ACTIVE_STATUSES = frozenset({"installed", "enabled"})
CACHE_MAX_ENTRIES = 10_000
T = TypeVar("T")
PublicRows = list[dict[str, Any]]


@dataclass(frozen=True)
class Tenant:
    """One Confluence site that installed the app. ``shared_secret`` lives only in memory."""

    client_key: str
    shared_secret: str = field(repr=False)
    base_url: str
    display_url: str | None = None
    product_type: str = "confluence"
    oauth_client_id: str | None = None
    installation_id: str | None = None
    status: Status = "installed"
    installed_at: float = 0.0
    updated_at: float = 0.0

    @property
    def active(self) -> bool:
        """Installed and not disabled: its events are accepted and its jobs may run."""
        return self.status in ACTIVE_STATUSES

    def public_dict(self) -> dict[str, Any]:
        """Everything but the shared secret (for the dashboard and logs)."""
        data = asdict(self)
        del data["shared_secret"]
        return data


class TenantKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}tenant:index"

    def tenant(self, client_key: str) -> str:
        return f"{self.prefix}tenant:client:{client_key}"

    def installation(self, installation_id: str) -> str:
        return f"{self.prefix}tenant:installation:{installation_id}"

    def lifecycle_token(self, token_digest: str) -> str:
        return f"{self.prefix}tenant:lifecycle-token:{token_digest}"


# Binds a signed lifecycle token to the body it first came with, until the token expires.
# KEYS: binding. ARGV: body digest, expiry (epoch seconds). 1 when the token is new or came
# with this body before, 0 when it came with another body.
_BIND_LIFECYCLE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2]) then
  return 1
end
return redis.call('GET', KEYS[1]) == ARGV[1] and 1 or 0
"""

# Deletes an uninstalled tenant's record, index entry and installation mapping, unless it was
# installed again or changed since the cutoff. KEYS: record, index. ARGV: clientKey, cutoff
# (epoch seconds), installation key prefix. Returns 1 when deleted.
_PURGE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'uninstalled' then
  return 0
end
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated_at') or '') or 0
if updated >= tonumber(ARGV[2]) then
  return 0
end
local installation = redis.call('HGET', KEYS[1], 'installation_id')
if installation and installation ~= '' then
  local mapping = ARGV[3] .. installation
  if redis.call('GET', mapping) == ARGV[1] then
    redis.call('DEL', mapping)
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

# Applies one lifecycle callback to a tenant record unless the record holds a later one.
# KEYS: record. ARGV: iat ('' = unordered), status, clientKey, index key, installation key
# ('' = none), then field/value pairs. 'installed' keeps a 'disabled' status; 'uninstalled'
# drops the secret. Returns the status written, or false when a later callback was applied.
_LIFECYCLE = """
local record, iat, status = KEYS[1], ARGV[1], ARGV[2]
if iat ~= '' then
  local last = tonumber(redis.call('HGET', record, 'lifecycle_iat') or '')
  if last and tonumber(iat) < last then
    return false
  end
end
if status == 'installed' and redis.call('HGET', record, 'status') == 'disabled' then
  status = 'disabled'
end
if #ARGV > 5 then
  redis.call('HSET', record, unpack(ARGV, 6))
end
redis.call('HSET', record, 'status', status)
if iat ~= '' then
  redis.call('HSET', record, 'lifecycle_iat', iat)
end
if status == 'uninstalled' then
  redis.call('HDEL', record, 'secret')
end
if ARGV[4] ~= '' then
  redis.call('SADD', ARGV[4], ARGV[3])
end
if ARGV[5] ~= '' then
  redis.call('SET', ARGV[5], ARGV[3])
end
return status
"""


def _site(base_url: str) -> str:
    """A base URL compared as a site: case and trailing slashes aside."""
    return base_url.strip().rstrip("/").lower()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TenantStore:
    """Tenant records in Redis plus a short-lived in-memory cache of decrypted tenants."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        cache_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = TenantKeys(settings.redis_prefix)
        self._secret_keys = settings.secret_keys
        self._box: SecretBox | None = None
        self.timeout = settings.ingest_timeout_seconds
        self.cache_seconds = (
            settings.tenant_cache_seconds if cache_seconds is None else cache_seconds
        )
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, Tenant]] = OrderedDict()
        # One read per tenant at a time: when a cached tenant expires under load, every
        # request waiting for it shares one HGETALL and one decryption.
        self._loading: dict[str, asyncio.Future[Tenant | None]] = {}
        self._generation = 0  # bumped by forget(): a read begun before it is not cached

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise UpstreamUnavailable(
                "tenant_store_unavailable", "the tenant store is unavailable; retry later"
            ) from exc

    @property
    def box(self) -> SecretBox:
        """Built on first use, so an app without REACTOR_SECRET_KEY still starts (and says so)."""
        if self._box is None:
            self._box = SecretBox(self._secret_keys)
        return self._box

    def _remember(self, tenant: Tenant) -> Tenant:
        self._cache[tenant.client_key] = (self.clock() + self.cache_seconds, tenant)
        self._cache.move_to_end(tenant.client_key)
        while len(self._cache) > CACHE_MAX_ENTRIES:
            self._cache.popitem(last=False)
        return tenant

    def _remember_written(self, tenant: Tenant) -> Tenant:
        # A read begun before this write must not cache what it read.
        self._generation += 1
        self._loading.pop(tenant.client_key, None)
        return self._remember(tenant)

    async def reread(self, client_key: str, *, min_age: float = 0.2) -> Tenant | None:
        """The tenant read again from Redis if the copy this process holds is at least
        ``min_age`` seconds old; else None (it was read just now: nothing fresher to find).

        For a signature that failed against the held copy: a reinstall taken in by another
        process rotates the secret, and this process would not see it for the cache lifetime.
        """
        cached = self._cache.get(client_key)
        if cached is None:
            return None  # not held: it was read from Redis for this very request
        read_at = cached[0] - self.cache_seconds
        if self.clock() - read_at < min_age:
            return None
        self.forget(client_key)
        return await self.get(client_key)

    def forget(self, client_key: str | None = None) -> None:
        """Drop one cached tenant, or all of them."""
        self._generation += 1
        if client_key is None:
            self._cache.clear()
            self._loading.clear()
        else:
            self._cache.pop(client_key, None)
            self._loading.pop(client_key, None)

    def _decode(self, raw: Mapping[Any, Any]) -> Tenant:
        data = {_text(k): _text(v) for k, v in raw.items()}
        sealed = data.get("secret")
        tenant = self._decode_public(data)
        if sealed is None:  # uninstalled: the secret went with it
            return tenant
        return replace(tenant, shared_secret=self.box.decrypt(sealed))

    @staticmethod
    def _decode_public(data: Mapping[str, str]) -> Tenant:
        """Every field but the secret, which is left empty."""
        status = data.get("status", "installed")
        return Tenant(
            client_key=data["client_key"],
            shared_secret="",
            base_url=data["base_url"],
            display_url=data.get("display_url") or None,
            product_type=data.get("product_type") or "confluence",
            oauth_client_id=data.get("oauth_client_id") or None,
            installation_id=data.get("installation_id") or None,
            status=status if status in STATUSES else "uninstalled",
            installed_at=float(data.get("installed_at") or 0),
            updated_at=float(data.get("updated_at") or 0),
        )

    def _encode(self, tenant: Tenant) -> dict[str, str]:
        return {
            "client_key": tenant.client_key,
            "secret": self.box.encrypt(tenant.shared_secret),
            "base_url": tenant.base_url,
            "display_url": tenant.display_url or "",
            "product_type": tenant.product_type,
            "oauth_client_id": tenant.oauth_client_id or "",
            "installation_id": tenant.installation_id or "",
            "status": tenant.status,
            "installed_at": repr(tenant.installed_at),
            "updated_at": repr(tenant.updated_at),
        }

    async def get(self, client_key: str) -> Tenant | None:
        """The tenant (any status) or None; served from the cache while it is fresh."""
        cached = self._cache.get(client_key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        loading = self._loading.get(client_key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(client_key, self._generation))
            self._loading[client_key] = loading
            loading.add_done_callback(functools.partial(self._loaded, client_key))
        # Shielded: a caller that gives up (its request timed out) leaves the read to the rest.
        return await asyncio.shield(loading)

    def _loaded(self, client_key: str, loading: asyncio.Future[Tenant | None]) -> None:
        if self._loading.get(client_key) is loading:
            del self._loading[client_key]
        if not loading.cancelled():
            loading.exception()  # seen, even when every caller gave up

    async def _load(self, client_key: str, generation: int) -> Tenant | None:
        raw = await self._call(self.redis.hgetall(self.keys.tenant(client_key)))  # type: ignore[arg-type]
        if not raw:
            self._cache.pop(client_key, None)
            return None
        try:
            tenant = self._decode(raw)
        except DecryptionError as exc:
            raise UpstreamUnavailable(
                "tenant_secret_unreadable",
                "a stored tenant secret matches no configured REACTOR_SECRET_KEY",
            ) from exc
        if generation != self._generation:
            return tenant  # forgotten while it was read: maybe stale, so not cached
        return self._remember(tenant)

    async def by_installation_id(self, installation_id: str) -> Tenant | None:
        """The Connect tenant whose install payload carried ``installation_id``."""
        client_key = await self._call(self.redis.get(self.keys.installation(installation_id)))
        return None if client_key is None else await self.get(_text(client_key))

    async def upsert(
        self, tenant: Tenant, *, issued_at: int | None = None, now: float | None = None
    ) -> Tenant | None:
        """Store an ``installed`` payload: a new tenant, or a reinstall rotating the secret.

        ``issued_at``: the callback token's ``iat``. None (nothing stored) when the record
        already holds a later callback: this one is late or replayed. A disabled tenant stays
        disabled (``enabled`` re-enables it).
        """
        wall = time.time() if now is None else now
        previous = await self.get_public(tenant.client_key)
        first_install = previous is None or previous.status == "uninstalled"
        stored = replace(
            tenant,
            status="installed",
            installed_at=wall if first_install or previous is None else previous.installed_at,
            updated_at=wall,
        )
        fields = self._encode(stored)
        installation = self.keys.installation(stored.installation_id or "")
        written = await self._lifecycle(
            stored.client_key,
            issued_at,
            "installed",
            index=self.keys.index,
            installation=installation if stored.installation_id else "",
            fields=fields,
        )
        if written is None:
            return None
        return self._remember_written(replace(stored, status=written))

    async def mark_status(
        self,
        client_key: str,
        status: Status,
        *,
        issued_at: int | None = None,
        now: float | None = None,
    ) -> Tenant | None:
        """Record a lifecycle change; None when the tenant is unknown, or when the record
        already holds a later callback (``issued_at``, the callback token's ``iat``).

        Works without decrypting the secret (so a tenant whose secret was encrypted with a
        retired key can still be uninstalled); the returned tenant carries no secret. An
        uninstalled tenant's record is kept without its secret.
        """
        tenant = await self.get_public(client_key)
        if tenant is None:
            return None
        wall = time.time() if now is None else now
        written = await self._lifecycle(
            client_key, issued_at, status, fields={"updated_at": repr(wall)}
        )
        if written is None:
            return None
        cached = self._cache.get(client_key)
        if cached is not None and written != "uninstalled":
            self._remember_written(replace(cached[1], status=written, updated_at=wall))
        else:
            self.forget(client_key)  # a read in flight may hold the old status (or secret)
        return replace(tenant, status=written, updated_at=wall)

    async def _lifecycle(
        self,
        client_key: str,
        issued_at: int | None,
        status: Status,
        *,
        fields: Mapping[str, str],
        index: str = "",
        installation: str = "",
    ) -> Status | None:
        args: list[str] = [
            "" if issued_at is None else str(int(issued_at)),
            status,
            client_key,
            index,
            installation,
        ]
        for name, value in fields.items():
            if name != "status":
                args += [name, value]
        written = await self._call(
            self.redis.eval(_LIFECYCLE, 1, self.keys.tenant(client_key), *args)  # type: ignore[arg-type]
        )
        if written is None:
            return None
        value = _text(written)
        return value if value in STATUSES else status

    async def bind_lifecycle_token(
        self, token_digest: str, body_digest: str, *, expires_at: int
    ) -> bool:
        """Bind a lifecycle token (by digest) to the body it came with, until ``expires_at``.

        False when the token came before with another body. Atlassian's signed-install
        token names the request (method, path, query) but not its body, so a token captured
        in flight could otherwise carry another shared secret or base URL while it is valid.
        A retry of the same callback (same token, same body) is bound already and passes.
        """
        bound = await self._call(
            self.redis.eval(  # type: ignore[arg-type]
                _BIND_LIFECYCLE,
                1,
                self.keys.lifecycle_token(token_digest),
                body_digest,
                str(int(expires_at)),
            )
        )
        return int(bound) == 1

    async def retire_others(self, tenant: Tenant) -> list[str]:
        """Mark uninstalled every other active tenant of ``tenant``'s site (same base URL).

        A site has one clientKey for this app at a time: one installed under a new clientKey
        (a site migration) leaves the old key with dead credentials, which no ``uninstalled``
        may ever come for; kept active, it would be swept and listed forever. Returns their
        clientKeys.
        """
        site = _site(tenant.base_url)
        retired = []
        for row in await self.list_public():
            key = str(row["client_key"])
            if (
                key != tenant.client_key
                and row.get("status") in ACTIVE_STATUSES
                and _site(str(row.get("base_url") or "")) == site
                and await self.mark_status(key, "uninstalled") is not None
            ):
                retired.append(key)
        return retired

    async def get_public(self, client_key: str) -> Tenant | None:
        """One tenant read without decrypting its secret (``shared_secret`` left empty)."""
        raw = await self._call(self.redis.hgetall(self.keys.tenant(client_key)))  # type: ignore[arg-type]
        if not raw:
            return None
        return self._decode_public({_text(k): _text(v) for k, v in raw.items()})

    async def purge_uninstalled(self, cutoff: float) -> list[str]:
        """Delete the tenants uninstalled before ``cutoff`` (epoch seconds; their last change
        was the uninstall) and not installed again; their clientKeys, sorted."""
        purged = []
        for row in await self.list_public():
            if row.get("status") != "uninstalled" or float(row.get("updated_at") or 0) >= cutoff:
                continue
            client_key = str(row["client_key"])
            done = await self._call(
                self.redis.eval(  # type: ignore[arg-type]
                    _PURGE,
                    2,
                    self.keys.tenant(client_key),
                    self.keys.index,
                    client_key,
                    repr(cutoff),
                    self.keys.installation(""),
                )
            )
            if int(done) == 1:
                self.forget(client_key)
                purged.append(client_key)
        return purged

    async def list(self) -> list[Tenant]:
        """Every tenant ever installed, sorted by clientKey."""
        members = await self._call(self.redis.smembers(self.keys.index))  # type: ignore[arg-type]
        tenants = []
        for client_key in sorted(_text(m) for m in members):
            tenant = await self.get(client_key)
            if tenant is not None:
                tenants.append(tenant)
        return tenants

    async def list_public(self) -> PublicRows:
        """Every tenant's :meth:`Tenant.public_dict`, read without decrypting any secret (two
        round trips, however many tenants)."""
        members = await self._call(self.redis.smembers(self.keys.index))  # type: ignore[arg-type]
        keys = sorted(_text(m) for m in members)
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_key in keys:
                pipe.hgetall(self.keys.tenant(client_key))
            found = await self._call(pipe.execute()) if keys else []
        return [
            self._decode_public({_text(k): _text(v) for k, v in raw.items()}).public_dict()
            for raw in found
            if raw
        ]
