"""The audit log: operator actions, and apart from them the refused sign-ins.

Operator actions (sign-ins, sign-outs, dead-letter retries and discards, by the dashboard, the
ops API and the CLI) are one capped list, ``{prefix}audit`` (JSON objects, newest at the head,
at most :data:`MAX_ENTRIES`). Entries name the operator by token fingerprint, never by token.

A refused sign-in (a wrong operator token, by the sign-in form or ``Authorization: Bearer``)
comes from anyone who can reach the web port, without signing in: it is kept in its own capped
list, ``{prefix}audit:refused`` (at most :data:`MAX_REFUSED`), and counted per hour
(``{prefix}audit:refused:hour:<epoch hour>``, kept :data:`REFUSED_HOURS` hours and one more).
However many there are, they never push an operator's action out of the log; the hourly counts
say how many there were when the list holds only the newest.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

MAX_ENTRIES = 5000
MAX_REFUSED = 1000
REFUSED_HOURS = 24
MAX_ADDRESS_CHARS = 64  # an address a client named itself (X-Forwarded-For) can be anything


@dataclass(frozen=True, slots=True)
class Entry:
    at: float
    operator: str
    action: str
    target: str = ""
    outcome: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.key = f"{prefix}audit"
        self.refused_key = f"{prefix}audit:refused"
        self.refused_hour_key = f"{prefix}audit:refused:hour:"

    async def record(
        self,
        operator: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> Entry:
        """Record an operator's action (``operator``: a token fingerprint, or ``cli``)."""
        entry = Entry(time.time(), operator, action, target, outcome, detail or {})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key, _dumps(entry))
            pipe.ltrim(self.key, 0, MAX_ENTRIES - 1)
            await pipe.execute()
        return entry

    async def record_refused(self, via: str, address: str) -> Entry:
        """Record a refused sign-in (``via``: ``form`` or ``bearer``) from ``address``, in the
        refused sign-ins' own list and this hour's count."""
        entry = Entry(
            time.time(),
            "anonymous",
            "sign_in",
            outcome="refused",
            detail={"via": via, "address": address[:MAX_ADDRESS_CHARS]},
        )
        hour = f"{self.refused_hour_key}{int(entry.at) // 3600}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.refused_key, _dumps(entry))
            pipe.ltrim(self.refused_key, 0, MAX_REFUSED - 1)
            pipe.incr(hour)
            pipe.expire(hour, (REFUSED_HOURS + 1) * 3600)
            await pipe.execute()
        return entry

    async def recent(self, limit: int = 100) -> list[Entry]:
        """The newest operator actions, newest first."""
        return await self._read(self.key, limit)

    async def recent_refused(self, limit: int = 100) -> list[Entry]:
        """The newest refused sign-ins, newest first."""
        return await self._read(self.refused_key, limit)

    async def refused_count(self, now: float | None = None) -> int:
        """Refused sign-ins in the last :data:`REFUSED_HOURS` hours (this one included)."""
        hour = int(time.time() if now is None else now) // 3600
        keys = [f"{self.refused_hour_key}{h}" for h in range(hour - REFUSED_HOURS + 1, hour + 1)]
        counts = await self.redis.mget(keys)
        return sum(int(c) for c in counts if c is not None)

    async def _read(self, key: str, limit: int) -> list[Entry]:
        rows = await self.redis.lrange(key, 0, max(0, limit - 1))  # type: ignore[misc]
        entries = []
        for raw in rows:
            try:
                entries.append(Entry(**json.loads(raw)))
            except (ValueError, TypeError):
                continue
        return entries


def _dumps(entry: Entry) -> str:
    return json.dumps(asdict(entry), separators=(",", ":"), default=str)
