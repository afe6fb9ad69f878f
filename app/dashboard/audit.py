"""The audit log: every operator action, newest first, kept in one capped Redis list.

Key: ``{prefix}audit`` (a list of JSON objects, newest at the head, capped at
:data:`MAX_ENTRIES`). Entries name the operator by token fingerprint, never by token.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

MAX_ENTRIES = 5000


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

    async def record(
        self,
        operator: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> Entry:
        entry = Entry(time.time(), operator, action, target, outcome, detail or {})
        raw = json.dumps(asdict(entry), separators=(",", ":"), default=str)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key, raw)
            pipe.ltrim(self.key, 0, MAX_ENTRIES - 1)
            await pipe.execute()
        return entry

    async def recent(self, limit: int = 100) -> list[Entry]:
        rows = await self.redis.lrange(self.key, 0, max(0, limit - 1))  # type: ignore[misc]
        entries = []
        for raw in rows:
            try:
                entries.append(Entry(**json.loads(raw)))
            except (ValueError, TypeError):
                continue
        return entries
