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
    assert "queued 3  running 1  deferred 2  waiting in line 0" in screen
    assert "received 9 events" in screen
    assert "webhook deliveries connect 7 (6 accepted, 1 rejected), forge 2 (2 accepted)" in screen
    assert "no worker is running" in screen
    assert "spent 100 / 65000" in screen and "runs out at" in screen
    written_off = {**data["budget"], "spent": 65000, "remaining": 0, "external": 64900}
    written_off["forecast"] = 1_799_999_000
    screen = format_status({**data, "budget": written_off}, "https://reactor.test")
    assert "spent 65000 (of which 64900 outside this app's calls) / 65000" in screen
    assert "exhausted at" in screen
    assert "acme.atlassian.net" in screen and "403 forbidden" in screen and "(60s ago)" in screen
    assert "▁▁█" in screen
    assert "oldest due" not in screen
    lagging = {**data, "queue": {**data["queue"], "oldest_due_seconds": 1500}}
    assert "waiting in line 0  oldest due 25m" in format_status(lagging, "https://reactor.test")


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

    code = await asyncio.to_thread(main, ["status", "--url", "http://[::1", "--token", "t"])
    assert code == 2
    assert "--url: 'http://[::1' is not a valid URL" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["-1", "0", "nan"])
def test_status_refuses_a_timeout_that_is_not_positive(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--timeout", timeout, "--url", "http://127.0.0.1:1", "--token", "t"])
    assert exit_.value.code == 2
    assert f"argument --timeout: must be a number above 0, not {timeout}" in capsys.readouterr().err


def test_status_line_parts_add_up_per_route() -> None:
    """Rejected deliveries are part of a route's count, and events stored by `reactor receive`
    are no delivery at all: the line must not read as a breakdown of the events received."""
    hour = {
        "received_total": 56,  # 54 deliveries, 2 of them refused, and 4 from `reactor receive`
        "received": {"connect": 52, "forge": 2},
        "rejected": {"connect:bad_jwt": 1, "connect:payload_too_large": 1},
        "deferred": {},
        "done": 0,
        "failed": 0,
        "dead": 0,
        "series": {"received": [56]},
    }
    data = {"now": 1_800_000_000.0, "queue": {"queued": 0, "running": 0, "deferred": 0}}
    screen = format_status({**data, "hour": hour, "workers": {"alive": 1}}, "https://r.test")
    assert "received 56 events  done 0" in screen
    assert "webhook deliveries connect 52 (50 accepted, 2 rejected), forge 2 (2 accepted)" in (
        screen
    )
    assert "received 56 (" not in screen


def test_tenants_screen_without_tenants() -> None:
    assert format_tenants({"connect": [], "forge": []}) == (
        "Connect tenants\n  none\nForge installations\n  none"
    )


def test_a_throttled_token_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 429 is the sign-in throttle of wrong operator tokens, not a bare HTTP status."""
    import httpx

    def throttled(url: str, **kwargs: Any) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "300"}, json={"error": "x"})

    monkeypatch.setattr("app.dashboard.cli.httpx.get", throttled)
    for command in ("status", "tenants"):
        code = main([command, "--url", "http://127.0.0.1:1", "--token", "wrong-token"])
        err = capsys.readouterr().err
        assert code == 2
        assert (
            "http://127.0.0.1:1: too many wrong operator tokens from this address (the sign-in "
            "throttle); wait up to 5 minutes, and check the token (--token or "
            "REACTOR_DASHBOARD_TOKEN)"
        ) in err
