"""Jobs the worker runs. The event pipeline fills ``process_event``; ``ping`` proves the wiring."""

from __future__ import annotations

from typing import Any


async def ping(ctx: dict[str, Any], value: str = "pong") -> str:
    """A no-op job used by health checks and tests of the worker wiring."""
    return value


async def process_event(ctx: dict[str, Any], event_id: str) -> str:
    """Run the reactions for one stored event (the pipeline issue builds this out)."""
    import structlog

    structlog.get_logger().info("event processed", event_id=event_id)
    return event_id
