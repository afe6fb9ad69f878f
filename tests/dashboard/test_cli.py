"""``reactor status`` and ``reactor tenants`` against a live server's ops API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from app.cli import main
from app.dashboard.cli import format_status, format_tenants, sparkline
from app.queue import EventQueue
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.dashboard.helpers import TOKEN, kill, make_event


def test_sparkline_scales_to_the_largest_value() -> None:
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([0, 4, 8]) == "▁▄█"
    assert sparkline([]) == ""


def test_status_screen_names_the_failing_tenant_and_the_missing_worker() -> None:
    data = {
        "now": 1_800_000_000.0,
        "queue": {"queued": 3, "running": 1, "deferred": 2},
        "hour": {
            "received_total": 9,
            "received": {"connect": 7, "forge": 2},
            "rejected": {"connect:bad_jwt": 1},
            "deferred": {"budget": 2},
            "done": 5,
            "failed": 2,
            "dead": 1,
            "series": {"received": [0, 1, 8]},
        },
        "dead_letters": 1,
        "workers": {"alive": 0},
        "budget": {
            "spent": 100,
            "quota": 65000,
            "remaining": 64900,
            "n429": 0,
            "paused_until": None,
            "forecast": None,
        },
        "failing": [
            {
                "tenant": "acme.atlassian.net",
                "id": "ev_0123456789abcdef0123",
                "state": "dead",
                "type": "page.updated",
                "reason": "403 forbidden",
                "updated": 1_799_999_940_000,
            }
        ],
    }
    screen = format_status(data, "https://reactor.test")
    assert "queued 3  running 1  deferred 2" in screen
    assert "received 9 (connect 7, forge 2)" in screen
    assert "no worker is running" in screen
    assert "spent 100 / 65000" in screen
    assert "acme.atlassian.net" in screen and "403 forbidden" in screen and "(60s ago)" in screen
    assert "▁▁█" in screen


async def test_status_and_tenants_commands_call_the_ops_api(
    live_server: Callable[..., Any],
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = live_server()
    await EventQueue(redis, settings).put(make_event(content_id="11"))
    await kill(redis, settings, make_event(tenant="site-z", content_id="12"), "401 token expired")
    await TenantStore(redis, settings).upsert(
        Tenant(client_key="site-z", shared_secret="s3cret", base_url="https://z.atlassian.net")
    )
    monkeypatch.setenv("REACTOR_DASHBOARD_TOKEN", TOKEN)
    monkeypatch.delenv("REACTOR_REDIS_URL", raising=False)

    code = await asyncio.to_thread(main, ["status", "--url", server.url, "--check"])
    out = capsys.readouterr().out
    assert code == 1  # a dead letter and no worker
    assert "queued 1" in out
    assert "site-z" in out and "401 token expired" in out

    code = await asyncio.to_thread(main, ["tenants", "--url", server.url])
    out = capsys.readouterr().out
    assert code == 0
    assert "https://z.atlassian.net" in out and "s3cret" not in out

    code = await asyncio.to_thread(main, ["status", "--url", server.url, "--token", "wrong"])
    assert code == 2
    assert "refused" in capsys.readouterr().err


def test_tenants_screen_without_tenants() -> None:
    assert format_tenants({"connect": [], "forge": []}) == (
        "Connect tenants\n  none\nForge installations\n  none"
    )
