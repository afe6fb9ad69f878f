"""Fetching signed-install public keys: cache, bounds, and failures that must become 503."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.asyncio import Redis

from app.atlassian.install_token import BadKeyId
from app.errors import UpstreamUnavailable, VerificationError
from app.install_keys import InstallKeys, RedisKeyStore
from app.settings import Settings

from .conftest import InstallKey


def keys_over(handler: httpx.MockTransport, **kwargs: float) -> InstallKeys:
    return InstallKeys(httpx.AsyncClient(transport=handler), "https://keys.test/", **kwargs)  # type: ignore[arg-type]


async def test_fetches_once_then_serves_from_cache(install_key: InstallKey) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, content=install_key.public_pem)

    keys = keys_over(httpx.MockTransport(handler))
    first = await keys.get("kid-1")
    second = await keys.get("kid-1")
    assert first is second
    assert seen == ["https://keys.test/kid-1"]


async def test_cache_is_bounded(install_key: InstallKey) -> None:
    keys = keys_over(
        httpx.MockTransport(lambda r: httpx.Response(200, content=install_key.public_pem)),
        cache_size=2,
    )
    for kid in ("a", "b", "c", "a"):
        await keys.get(kid)
    assert keys.fetches == 4
    assert len(keys._cache) == 2


async def test_unsafe_kid_never_reaches_the_network() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    keys = keys_over(httpx.MockTransport(handler))
    for kid in ("../x", "%2F", "a?b", "a@b", "a.b"):
        with pytest.raises(BadKeyId):
            await keys.get(kid)


async def test_unknown_kid_is_a_401() -> None:
    keys = keys_over(httpx.MockTransport(lambda r: httpx.Response(404)))
    with pytest.raises(VerificationError) as info:
        await keys.get("nope")
    assert (info.value.status, info.value.code) == (401, "unknown_key_id")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(403),
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, content=b"-" * (20 * 1024)),
    ],
)
async def test_bad_key_server_answers_are_503(response: httpx.Response) -> None:
    keys = keys_over(httpx.MockTransport(lambda r: response))
    with pytest.raises(UpstreamUnavailable) as info:
        await keys.get("kid")
    assert info.value.status == 503


async def test_key_server_down_is_503() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    keys = keys_over(httpx.MockTransport(handler))
    with pytest.raises(UpstreamUnavailable) as info:
        await keys.get("kid")
    assert "unreachable" in info.value.detail


async def test_slow_key_server_is_503_within_the_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    keys = keys_over(httpx.MockTransport(handler), timeout=0.2)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable) as info:
        await keys.get("kid")
    assert time.monotonic() - started < 1.0
    assert "timed out" in info.value.detail


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_kid_the_server_denied_is_not_asked_for_again_for_a_while() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(404)

    clock = Clock()
    keys = keys_over(httpx.MockTransport(handler), clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(VerificationError):
            await keys.get("made-up")
    assert seen == ["/made-up"]
    clock.now += 301
    with pytest.raises(VerificationError):
        await keys.get("made-up")
    assert seen == ["/made-up", "/made-up"]


async def test_callbacks_naming_one_kid_share_one_fetch(install_key: InstallKey) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, content=install_key.public_pem)

    keys = keys_over(httpx.MockTransport(handler))
    found = await asyncio.gather(*(keys.get("kid-1") for _ in range(20)))
    assert keys.fetches == 1 and all(k is found[0] for k in found)


async def test_fetches_of_new_kids_are_capped_per_minute(install_key: InstallKey) -> None:
    clock = Clock()
    keys = keys_over(
        httpx.MockTransport(lambda r: httpx.Response(404)),
        max_fetches=5,
        clock=clock,  # type: ignore[arg-type]
    )
    for n in range(5):
        with pytest.raises(VerificationError):
            await keys.get(f"kid-{n}")
    with pytest.raises(UpstreamUnavailable) as info:
        await keys.get("kid-5")
    assert info.value.status == 503 and info.value.code == "install_keys_busy"
    assert keys.fetches == 5
    clock.now += 61
    with pytest.raises(VerificationError):
        await keys.get("kid-5")
    assert keys.fetches == 6


async def test_a_key_fetched_once_is_found_by_every_process_and_after_a_restart(
    install_key: InstallKey, redis: Redis, settings: Settings
) -> None:
    """So a flood of made-up kids (which uses up the fetch cap) cannot lock out the installs
    whose kid this deployment has seen: only a kid never seen costs a fetch."""
    served = httpx.MockTransport(lambda r: httpx.Response(200, content=install_key.public_pem))
    first = keys_over(served, store=RedisKeyStore(redis, settings))  # type: ignore[arg-type]
    key = await first.get("kid-1")
    assert first.fetches == 1

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no fetch expected")

    later = keys_over(
        httpx.MockTransport(refuse),
        store=RedisKeyStore(redis, settings),  # type: ignore[arg-type]
        max_fetches=0,  # the cap is used up
    )
    found = await later.get("kid-1")
    assert found.public_numbers() == key.public_numbers() and later.fetches == 0
    with pytest.raises(UpstreamUnavailable) as info:
        await later.get("kid-never-seen")
    assert info.value.code == "install_keys_busy"
    # A key written to Redis by someone else (not sealed with the app's key) does not open.
    planted = f"{settings.redis_prefix}install-key:kid-planted"
    await redis.set(planted, install_key.public_pem)
    with pytest.raises(UpstreamUnavailable):
        await later.get("kid-planted")
