"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def healthz(request: Request) -> JSONResponse:
    """200 while the process serves requests."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """200 only when Redis answers within a second; 503 with the reason otherwise."""
    redis = request.app.state.redis
    try:
        await asyncio.wait_for(redis.ping(), timeout=1.0)
    except (RedisError, OSError, TimeoutError) as exc:
        reason = (
            "redis did not answer within 1s"
            if isinstance(exc, TimeoutError)
            else (f"redis unreachable: {type(exc).__name__}")
        )
        return JSONResponse(
            {"status": "unavailable", "reason": reason},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready"})


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
]
