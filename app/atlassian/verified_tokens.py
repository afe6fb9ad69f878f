"""Connect tokens already verified for one request target, remembered until they expire. Pure.

Confluence signs each webhook with a fresh token, but the claims of a webhook token are its
tenant (``iss``), the second it was signed (``iat``, ``exp``), the request it is bound to (``qsh``:
method, path and query) and the acting user (``sub``). Webhooks of one event type signed for one
tenant within the same second carry the very same token, and a burst of changes on a busy site is
made of such webhooks. A token's signature and claims do not change with time: once verified for
a target, the same string on the same target needs only what does change, checked again on
every hit:

* the time window (``exp``, ``iat``, ``nbf`` with the leeway), against the current time;
* the tenant's current shared secret, which must be the one the token was verified with (a
  reinstall that replaced it makes the entry useless);
* the tenant's status, which the caller checks after every verification, cached or not.

Anything else (a different target, a secret that changed, a window that closed) is a miss, and
the token goes through :func:`~app.atlassian.connect_jwt.verify_connect_token` again, which
raises the precise refusal. Only tokens that passed it are remembered, keyed by their whole
string: nothing about an unverified token is ever trusted.

Memory is bounded in count and size: at most ``capacity`` entries (the oldest leaves first),
none for a token and target longer than :data:`MAX_KEY_CHARS` together (Confluence's are a few
hundred characters), and an entry keeps only the issuer, the time claims and a keyed hash of
the secret (Python's per-process SipHash of the string: no secret material, never printed).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from app.atlassian.connect_jwt import ConnectClaims

DEFAULT_CAPACITY = 4096
MAX_KEY_CHARS = 2048


class _Entry(NamedTuple):
    issuer: str
    secret_hash: int
    issued_at: int
    expires_at: int
    not_before: int | None


class VerifiedTokens:
    """A bounded map of (token, method, target) to what its verification established."""

    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        # Ordered for an O(1) eviction of the oldest: a plain dict's first live entry lies
        # behind every one deleted before it.
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def issuer(self, token: str, method: str, target: str) -> str | None:
        """The tenant a remembered token was verified for, else None (look its secret up)."""
        entry = self._entries.get((token, method, target))
        return None if entry is None else entry.issuer

    def holds(
        self, token: str, method: str, target: str, *, secret: str, now: int, leeway: int
    ) -> bool:
        """Whether a token verified before for this target still holds now.

        ``secret`` is the tenant's shared secret as it is now. A remembered token that no
        longer holds (expired, secret replaced) is forgotten and False is returned: the caller
        verifies it in full, which says why it is refused.
        """
        key = (token, method, target)
        entry = self._entries.get(key)
        if entry is None:
            return False
        if (
            entry.secret_hash != hash(secret)
            or now >= entry.expires_at + leeway
            or entry.issued_at > now + leeway
            or (entry.not_before is not None and entry.not_before > now + leeway)
        ):
            del self._entries[key]
            return False
        return True

    def remember(
        self, token: str, method: str, target: str, *, secret: str, claims: ConnectClaims
    ) -> None:
        """Record a token that :func:`verify_connect_token` accepted for this target."""
        if len(token) + len(target) > MAX_KEY_CHARS:
            return
        entries = self._entries
        key = (token, method, target)
        if key not in entries and len(entries) >= self.capacity:
            entries.popitem(last=False)
        # verify_connect_token checked that ``nbf``, if present, is a number.
        not_before = claims.raw.get("nbf")
        entries[key] = _Entry(
            claims.issuer,
            hash(secret),
            claims.issued_at,
            claims.expires_at,
            None if not_before is None else int(not_before),
        )
