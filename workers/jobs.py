"""Jobs the worker runs. The event pipeline fills ``process_event``; ``ping`` proves the wiring."""

from __future__ import annotations

from typing import Any


async def ping(ctx: dict[str, Any], value: str = "pong") -> str:
    """A no-op job used by health checks and tests of the worker wiring."""
    return value
