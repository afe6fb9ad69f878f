"""Forge installations: the registry, the app system tokens, and Forge -> tenant resolution.

Redis keys (all under ``settings.redis_prefix``)::

    forge:installation:<installationId>  hash: cloud_id, api_base_url, environment, license,
                                          first/last seen, installed/upgraded, event stats
    forge:installations                  zset of installation ids by last seen (for listings)
    forge:tenant:<tenant>                installation id serving a tenant (jobs find tokens by it)
    forge:cloud:<cloudId>                the Connect clientKey a site's installation was linked
                                          to (a later installation on the site keeps it)
    forge:token:<installationId>         SecretBox-encrypted JSON {token, api_base_url, exp};
                                          the key expires at the token's (bounded) ``exp``
    forge:invocation:<sha256 of a FIT>   sha256 of the system token that FIT came with, until
                                          the FIT expires (a replay may not bring another)
    tenant:installation:<installationId> (read only; written by the Connect tenant store)

Installation ids are stored as ARIs (``ari:cloud:ecosystem::installation/<uuid>``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from redis.asyncio import Redis

from app.atlassian.forge_token import (
    INSTALLATION_ARI_PREFIX,
    MAX_LEEWAY_SECONDS,
    Invocation,
    installation_ari,
)
from app.crypto import SecretBox
from app.errors import Defer, PermanentFailure

# A token this close to its expiry is not handed out: a call must not start with it.
TOKEN_MARGIN_SECONDS = 60
# How long a job waits for a fresh token (an event or the hourly trigger brings one).
TOKEN_DEFER_SECONDS = 300.0
# A job waits this long at most (since its event came) for a token, then it is dead-lettered:
# an installation that brought none for a day (no event, no hourly trigger) is gone.
TOKEN_WAIT_SECONDS = 24 * 3600.0
STATUS_ACTIVE = "active"
STATUS_UNINSTALLING = "uninstalling"
# Installations read per round trip when listing them.
LIST_BATCH = 500


class SystemToken(NamedTuple):
    """An app system token and where to use it: ``Authorization: Bearer`` on ``api_base_url``."""

    token: str
    api_base_url: str
    expires_at: int


class Invoked(NamedTuple):
    """The verified Forge invocation a system token came with."""

    fingerprint: str  # sha256 (hex) of its Forge Invocation Token
    issued_at: int  # the token's ``iat``: orders the invocations of an installation
    expires_at: int  # the token's ``exp``: a replay of it is refused until then


class Saved(StrEnum):
    """What :meth:`InstallationStore.save_system_token` did with a token."""

    STORED = "stored"
    EXPIRED = "expired"  # already past its expiry
    UNINSTALLING = "uninstalling"  # the installation is going away: no token is kept
    OLDER = "older"  # the held token came with a later invocation
    REPLAYED = "replayed"  # its invocation token came before with another system token


# Stores a system token unless the installation is being uninstalled, its invocation token
# came before with another system token, or the held token came with a later invocation: the
# check and the write are one step, so a pre-uninstall landing between them cannot be undone.
# KEYS: installation hash, token, invocation memory. ARGV: sealed token, its expiry (epoch s),
# the invocation's iat ('' = saved without its invocation: taken as the newest), digest of the
# system token, expiry of the invocation memory, the uninstalling status.
_SAVE_IF_NEWEST = """
if redis.call('HGET', KEYS[1], 'status') == ARGV[6] then
  return 'uninstalling'
end
if ARGV[3] ~= '' then
  if not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'EXAT', ARGV[5]) then
    if redis.call('GET', KEYS[3]) ~= ARGV[4] then
      return 'replayed'
    end
  end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local held = tonumber(redis.call('HGET', KEYS[1], 'token_issued_at'))
    if held and held > tonumber(ARGV[3]) then
      return 'older'
    end
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'EXAT', ARGV[2])
redis.call('HSET', KEYS[1], 'token_expires_at', ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'token_issued_at')
else
  redis.call('HSET', KEYS[1], 'token_issued_at', ARGV[3])
end
return 'stored'
"""

# Deletes an installation marked uninstalling and not seen since the cutoff. KEYS: its hash,
# its token, the index. ARGV: installation id, cutoff (epoch s), tenant mapping key prefix.
# Returns the tenant it served when no other installation serves it now, '' when another does,
# false when nothing was deleted (installed again, or seen since).
_PURGE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'uninstalling' then
  return false
end
if (tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '') or 0) >= tonumber(ARGV[2]) then
  return false
end
local tenant = redis.call('HGET', KEYS[1], 'tenant') or ''
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if tenant ~= '' and redis.call('GET', ARGV[3] .. tenant) == ARGV[1] then
  redis.call('DEL', ARGV[3] .. tenant)
  return tenant
end
return ''
"""


@dataclass(frozen=True, slots=True)
class Installation:
    """One Forge installation as the registry knows it."""

    installation_id: str
    cloud_id: str
    api_base_url: str
    tenant: str
    status: str
    environment_type: str | None
    license_active: bool | None
    app_version: str | None
    first_seen: int
    last_seen: int
    installed_at: int | None
    upgraded_at: int | None
    events: int
    retries: int
    last_retry_count: int | None
    token_expires_at: int | None


FORGE_TENANT_PREFIX = "forge:"


def forge_tenant(cloud_id: str) -> str:
    """The tenant id of a site known to us only through Forge."""
    return f"{FORGE_TENANT_PREFIX}{cloud_id}"


def is_forge_tenant(tenant: str) -> bool:
    """Whether ``tenant`` is a site known only through Forge (else a Connect clientKey)."""
    return tenant.startswith(FORGE_TENANT_PREFIX)


class InstallationStore:
    """Registry of Forge installations and their encrypted app system tokens."""

    def __init__(
        self,
        redis: Redis,
        box: SecretBox,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.box = box
        self.prefix = prefix
        self.clock = clock
        self._save_token = redis.register_script(_SAVE_IF_NEWEST)

    def _installation(self, installation_id: str) -> str:
        return f"{self.prefix}forge:installation:{installation_id}"

    def _token(self, installation_id: str) -> str:
        return f"{self.prefix}forge:token:{installation_id}"

    def _invocation(self, fingerprint: str) -> str:
        return f"{self.prefix}forge:invocation:{fingerprint}"

    def _tenant(self, tenant: str) -> str:
        return f"{self.prefix}forge:tenant:{tenant}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}forge:installations"

    def _cloud(self, cloud_id: str) -> str:
        return f"{self.prefix}forge:cloud:{cloud_id}"

    async def resolve_tenant(self, installation_id: str, cloud_id: str) -> str:
        """The tenant id for events of this installation.

        A site also installed through Connect (whose install payload carried this Forge
        installationId) maps to the Connect clientKey, so both routes share one tenant and
        the pipeline dedupes their events. The site keeps that id: a later installation on
        the same site (a Forge reinstall, which the Connect install never named) maps to it
        too, so event ids, "once" effects and sweep watermarks carry on. Any other site is
        ``forge:<cloudId>``.
        """
        ari = installation_ari(installation_id)
        bare = ari.removeprefix(INSTALLATION_ARI_PREFIX)
        keys = [f"{self.prefix}tenant:installation:{value}" for value in (ari, bare)]
        keys.append(self._cloud(cloud_id))
        for value in await self.redis.mget(keys):
            if value:
                return _text(value)
        return forge_tenant(cloud_id)

    async def register(self, invocation: Invocation, tenant: str) -> None:
        """Create or refresh the installation a verified invocation came from."""
        now = int(self.clock())
        key = self._installation(invocation.installation_id)
        fields: dict[str, str | int] = {
            "installation_id": invocation.installation_id,
            "cloud_id": invocation.cloud_id,
            "api_base_url": invocation.api_base_url,
            "tenant": tenant,
            "environment_type": invocation.environment_type or "",
            "environment_id": invocation.environment_id or "",
            "app_version": invocation.app_version or "",
            "license_active": _flag(invocation.license_active),
            "last_seen": now,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "first_seen", str(now))
            # A new installation is active; an uninstalling one stays so until it is installed
            # again (record_lifecycle): a late event or retry must not bring it back to life.
            pipe.hsetnx(key, "status", STATUS_ACTIVE)
            pipe.hset(key, mapping=fields)
            pipe.zadd(self._index, {invocation.installation_id: now})
            pipe.set(self._tenant(tenant), invocation.installation_id)
            if not is_forge_tenant(tenant):  # linked to a Connect install: the site's id
                pipe.set(self._cloud(invocation.cloud_id), tenant)
            await pipe.execute()

    async def record_event(self, installation_id: str, event_type: str, retry_count: int) -> None:
        """Count a delivered event and remember Forge's ``retryContext.retryCount``."""
        key = self._installation(installation_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "events", 1)
            pipe.hincrby(key, "retries", 1 if retry_count > 0 else 0)
            pipe.hset(key, mapping={"last_event_type": event_type, "last_retry_count": retry_count})
            await pipe.execute()

    async def record_lifecycle(self, installation_id: str, event_type: str) -> None:
        """Remember when the app was installed or upgraded (major version) here."""
        field = "upgraded_at" if event_type.endswith(":upgraded:app") else "installed_at"
        mapping: dict[str, str | int] = {
            field: int(self.clock()),
            "last_lifecycle": event_type,
            "status": STATUS_ACTIVE,  # installed (again) or upgraded: live, whatever it was
        }
        await self.redis.hset(self._installation(installation_id), mapping=mapping)  # type: ignore[misc]

    async def mark_uninstalling(self, installation_id: str) -> None:
        """The preUninstall hook ran: drop the token, keep the record for the operators."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._installation(installation_id), "status", STATUS_UNINSTALLING)
            pipe.hdel(self._installation(installation_id), "token_expires_at", "token_issued_at")
            pipe.delete(self._token(installation_id))
            await pipe.execute()

    async def status(self, installation_id: str) -> str | None:
        """The installation's status (``active``, ``uninstalling``), None when unknown."""
        key = self._installation(installation_ari(installation_id))
        value = await self.redis.hget(key, "status")  # type: ignore[misc]
        return None if value is None else _text(value)

    async def save_system_token(
        self, installation_id: str, token: SystemToken, invoked: Invoked | None = None
    ) -> Saved:
        """Store ``token`` encrypted, expiring at its ``expires_at``, when it is the newest.

        The token held is the one that came with the installation's most recent verified
        invocation, ordered by that invocation token's own ``iat`` (Forge's clock, signed), not
        by the expiry the system token claims: that ``exp`` is read unverified, so a token
        claiming to live longest must not win over Atlassian's next one. A token that came
        with an older invocation than the held token's is not kept (``OLDER``); one from the
        same second replaces it.

        Forge mints a system token with each invocation token (FIT), and a FIT is good for
        ~25 s without being tied to the header beside it. So each FIT is remembered (by
        digest, with its system token's digest) until it expires: the same FIT coming again
        with another system token is a replay by someone who captured it, and its token is
        refused (``REPLAYED``); with the same token it is a retry and is stored as before. A
        FIT nobody saw before can still bring a junk token, but only until the installation's
        next invocation (the hourly trigger at the latest), and its claimed expiry is bounded
        (:data:`~app.atlassian.forge_token.SYSTEM_TOKEN_MAX_TTL`).

        Not for an installation being uninstalled: a late event or a retry must not bring its
        token back (only its ``installed`` lifecycle event makes it active again). The checks
        and the write are one Lua script, so a pre-uninstall that commits while an event's
        token is being saved either comes first (the token is refused) or after (it drops the
        token), never in between. Without ``invoked`` (tools, tests) the token is taken as the
        newest.
        """
        now = self.clock()
        if token.expires_at <= now:
            return Saved.EXPIRED
        sealed = self.box.encrypt(json.dumps(token._asdict(), separators=(",", ":")))
        fingerprint = "" if invoked is None else invoked.fingerprint
        memory = int(now) + 1
        if invoked is not None:  # the FIT is valid until its exp plus the verifier's leeway
            memory = max(invoked.expires_at + MAX_LEEWAY_SECONDS + 1, memory)
        keys = [
            self._installation(installation_id),
            self._token(installation_id),
            self._invocation(fingerprint),
        ]
        args = [
            sealed,
            str(token.expires_at),
            "" if invoked is None else str(invoked.issued_at),
            _digest(token.token),
            str(memory),
            STATUS_UNINSTALLING,
        ]
        return Saved(_text(await self._save_token(keys=keys, args=args)))

    async def system_token(self, installation_id: str) -> SystemToken | None:
        """A token valid for at least another minute, or None."""
        token = await self._load_token(installation_ari(installation_id))
        if token is None or token.expires_at - self.clock() < TOKEN_MARGIN_SECONDS:
            return None
        return token

    async def installation_for_tenant(self, tenant: str) -> str | None:
        value = await self.redis.get(self._tenant(tenant))
        return None if value is None else _text(value)

    async def _load_token(self, installation_id: str) -> SystemToken | None:
        sealed = await self.redis.get(self._token(installation_id))
        if sealed is None:
            return None
        data = json.loads(self.box.decrypt(sealed))
        return SystemToken(str(data["token"]), str(data["api_base_url"]), int(data["expires_at"]))

    async def get(self, installation_id: str) -> Installation | None:
        raw = await self.redis.hgetall(self._installation(installation_ari(installation_id)))  # type: ignore[misc]
        return _installation(raw) if raw else None

    async def purge_uninstalled(self, cutoff: float) -> list[str]:
        """Delete the installations marked uninstalling and not seen since ``cutoff`` (epoch
        seconds); the tenants they served that no other installation serves now, sorted."""
        freed: set[str] = set()
        for item in await self.list(limit=1_000_000):
            if item.status != STATUS_UNINSTALLING or item.last_seen >= cutoff:
                continue
            ari = installation_ari(item.installation_id)
            keys = [self._installation(ari), self._token(ari), self._index]
            args = [item.installation_id, repr(cutoff), self._tenant("")]
            tenant = await self.redis.eval(_PURGE, 3, *keys, *args)  # type: ignore[misc]
            if tenant:
                freed.add(_text(tenant))
        return sorted(freed)

    async def list(self, limit: int = 200) -> list[Installation]:
        """Installations, most recently seen first: read :data:`LIST_BATCH` at a time, one
        round trip each (the sweeps' tick lists up to 10,000 every minute)."""
        ids = [_text(i) for i in await self.redis.zrevrange(self._index, 0, limit - 1)]
        found: list[Installation] = []
        for first in range(0, len(ids), LIST_BATCH):
            async with self.redis.pipeline(transaction=False) as pipe:
                for installation_id in ids[first : first + LIST_BATCH]:
                    pipe.hgetall(self._installation(installation_ari(installation_id)))
                rows = await pipe.execute()
            found.extend(_installation(raw) for raw in rows if raw)
        return found


async def require_system_token(
    store: InstallationStore, tenant: str, *, delay: float = TOKEN_DEFER_SECONDS
) -> SystemToken:
    """The system token serving ``tenant``; :class:`~app.errors.Defer` the job when none is valid.

    ``tenant`` is an event's tenant (``forge:<cloudId>`` or a Connect clientKey mapped to a
    Forge installation). The wait ends when an event or the hourly trigger brings a token.
    """
    installation_id = await store.installation_for_tenant(tenant)
    if installation_id is None and not is_forge_tenant(tenant):
        # Not a Forge tenant and nothing installed under this clientKey: no token will ever
        # come. Dead-lettered (replayable once the site installs the app), never deferred.
        raise PermanentFailure(
            f"tenant {tenant!r} is not installed (no Connect tenant or Forge installation)"
        )
    if installation_id is not None:
        if await store.status(installation_id) == STATUS_UNINSTALLING:
            # No token will come (one a late call brought is not used): waiting would defer
            # the event forever. A re-install makes the installation active again, and its
            # dead letters can then be replayed.
            raise PermanentFailure("the app is being uninstalled from this site (Forge)")
        token = await store.system_token(installation_id)
        if token is not None:
            return token
    raise Defer(delay, "no valid Forge system token", give_up_after=TOKEN_WAIT_SECONDS)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("1" if value else "0")


def _installation(raw: dict[Any, Any]) -> Installation:
    data = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }

    def num(name: str) -> int | None:
        value = data.get(name)
        return int(value) if value not in (None, "") else None

    license_ = data.get("license_active", "")
    return Installation(
        installation_id=data.get("installation_id", ""),
        cloud_id=data.get("cloud_id", ""),
        api_base_url=data.get("api_base_url", ""),
        tenant=data.get("tenant", ""),
        status=data.get("status", STATUS_ACTIVE),
        environment_type=data.get("environment_type") or None,
        license_active=None if license_ == "" else license_ == "1",
        app_version=data.get("app_version") or None,
        first_seen=num("first_seen") or 0,
        last_seen=num("last_seen") or 0,
        installed_at=num("installed_at"),
        upgraded_at=num("upgraded_at"),
        events=num("events") or 0,
        retries=num("retries") or 0,
        last_retry_count=num("last_retry_count"),
        token_expires_at=num("token_expires_at"),
    )
