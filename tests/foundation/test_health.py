from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from app import redis as redis_conn
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.settings import Settings


async def test_healthz_and_readyz_on_a_real_socket(live_server, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    server = live_server()
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}


async def test_readyz_follows_redis_down_and_back_without_restart(
    live_server,
    settings: Settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "r", appendonly=False)
    redis_server.start()
    app_settings = settings.model_copy(update={"redis_url": redis_server.url})
    client_redis = redis_conn.connect(redis_server.url, socket_timeout=0.5)
    server = live_server(create_app(app_settings, redis=client_redis))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200
            redis_server.kill()
            down = await client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["status"] == "unavailable"
            assert down.headers["retry-after"] == "5"
            assert (await client.get("/healthz")).status_code == 200
            redis_server.start()
            for _ in range(50):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await client.get("/readyz")).status_code == 200
    finally:
        redis_server.stop()


async def test_security_headers_on_every_response(live_server) -> None:  # type: ignore[no-untyped-def]
    server = live_server()
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in ("/healthz", "/no-such-page"):
            resp = await client.get(path)
            cache = resp.headers["cache-control"]
            assert "no-cache" in cache and "no-store" in cache
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert resp.headers["referrer-policy"] not in (
                "unsafe-url",
                "no-referrer-when-downgrade",
            )
        missing = await client.get("/no-such-page")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
