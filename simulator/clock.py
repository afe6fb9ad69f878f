"""The simulator's clock: wall time, or scaled and shiftable time for benchmarks and tests.

``Clock(scale=3600)`` lets a simulated hour pass in one real second; ``advance(s)`` jumps ahead.
Rate-limit windows, retry delays and content timestamps read this clock. Tokens the simulator
signs for the app (Connect JWTs, Forge invocation tokens) use real wall time, because the app
checks them against its own clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime


class Clock:
    """Simulated time = start + (real elapsed x scale) + manual offset."""

    def __init__(
        self,
        *,
        scale: float = 1.0,
        start: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self._monotonic = monotonic
        self._origin_real = monotonic()
        self._origin_sim = time.time() if start is None else start
        self._scale = scale
        self._offset = 0.0

    @property
    def scale(self) -> float:
        return self._scale

    def set_scale(self, scale: float) -> None:
        """Change the speed from now on, keeping simulated time continuous."""
        if scale <= 0:
            raise ValueError("scale must be positive")
        now = self.time()
        self._origin_real = self._monotonic()
        self._origin_sim = now - self._offset
        self._scale = scale

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (never backwards)."""
        self._offset += max(0.0, seconds)

    def time(self) -> float:
        """Simulated seconds since the epoch."""
        elapsed = (self._monotonic() - self._origin_real) * self._scale
        return self._origin_sim + elapsed + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def iso(self) -> str:
        """Now as Confluence prints it: ``YYYY-MM-DDTHH:mm:ss.sssZ``."""
        return iso_ms(self.time())

    def millis(self) -> int:
        return int(self.time() * 1000)

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for a simulated duration (real duration = sim_seconds / scale)."""
        if sim_seconds > 0:
            await asyncio.sleep(sim_seconds / self._scale)


def iso_ms(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
