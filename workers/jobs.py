"""Jobs the worker runs: ``process_event`` (the event pipeline) and ``ping`` (wiring checks)."""

from __future__ import annotations

from typing import Any

from workers.pipeline import process_event

__all__ = ["ping", "process_event"]


async def ping(ctx: dict[str, Any], value: str = "pong") -> str:
    """A no-op job used by health checks and tests of the worker wiring."""
    return value
