"""The JWKS client against a real HTTP server: caching, rotation, rate-limited refresh, outages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.embedded_redis import free_port
from app.errors import UpstreamUnavailable
from app.jwks import JwksClient, parse_jwks
from tests.forge.conftest import JwksHost, SigningKey


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def client(http: httpx.AsyncClient, url: str, clock: Clock, **kwargs: float) -> JwksClient:
    return JwksClient(http, url, ttl=600, min_refresh_interval=30, clock=clock, **kwargs)


async def test_keys_are_cached_until_the_ttl(
    http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    clock = Clock()
    jwks = client(http, jwks_host.url, clock)
    for _ in range(5):
        assert keys[0].kid in await jwks.keys_for(keys[0].kid)
    assert jwks_host.hits == 1
    clock.now += 601
    await jwks.keys_for(keys[0].kid)
    assert jwks_host.hits == 2


async def test_a_rotated_key_is_fetched_once_the_refresh_interval_allows(
    http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    clock = Clock()
    jwks = client(http, jwks_host.url, clock)
    await jwks.keys_for(keys[0].kid)
    jwks_host.keys = [keys[1]]  # the host rotated: old key gone, new key in
    clock.now += 5
    with pytest.raises(UpstreamUnavailable) as held:  # not refreshed inside the interval
        await jwks.keys_for(keys[1].kid)
    assert held.value.code == "jwks_refresh_pending"
    clock.now += 30
    fresh = await jwks.keys_for(keys[1].kid)
    assert keys[1].kid in fresh and keys[0].kid not in fresh
    assert jwks_host.hits == 2


async def test_a_flood_of_made_up_kids_costs_one_fetch_per_interval(
    http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    clock = Clock()
    jwks = client(http, jwks_host.url, clock)
    await jwks.keys_for(keys[0].kid)
    clock.now += 31
    results = await asyncio.gather(*(jwks.keys_for(f"made-up-{i}") for i in range(200)))
    assert all(f"made-up-{i}" not in r for i, r in enumerate(results))
    assert jwks_host.hits == 2, "concurrent unknown kids must share one refresh"
    for i in range(200):
        clock.now += 0.1  # 20 s of flooding
        with pytest.raises(UpstreamUnavailable):  # "retry later": a refresh is held back
            await jwks.keys_for(f"sequential-{i}")
    assert jwks_host.hits == 2
    clock.now += 11
    await jwks.keys_for("one-more")
    assert jwks_host.hits == 3
    assert jwks.fetches == 3


async def test_host_errors_are_upstream_unavailable(
    http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    jwks_host.status = 502
    with pytest.raises(UpstreamUnavailable) as info:
        await client(http, jwks_host.url, Clock()).keys_for(keys[0].kid)
    assert info.value.status == 503 and info.value.code == "jwks_unavailable"
    assert "HTTP 502" in info.value.detail


async def test_unreachable_host_is_upstream_unavailable(
    http: httpx.AsyncClient, keys: list[SigningKey]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    with pytest.raises(UpstreamUnavailable):
        await client(http, url, Clock()).keys_for(keys[0].kid)


@pytest.mark.parametrize("slowness", ["delay", "trickle"])
async def test_a_slow_host_times_out_as_upstream_unavailable(
    slowness: str, http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    """An answer held back, or trickled (a piece every 0.15 s never trips httpx's 0.2 s read
    timeout, which bounds each read): the fetch as a whole is bounded."""
    if slowness == "delay":
        jwks_host.delay = 1.0
    else:
        jwks_host.trickle = 0.15
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UpstreamUnavailable) as info:
        await client(http, jwks_host.url, Clock(), timeout=0.2).keys_for(keys[0].kid)
    assert "timed out" in info.value.detail
    assert loop.time() - started < 0.9


async def test_an_oversized_key_set_is_refused(
    http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    jwks_host.padding = 300 * 1024
    with pytest.raises(UpstreamUnavailable) as info:
        await client(http, jwks_host.url, Clock()).keys_for(keys[0].kid)
    assert "larger than" in info.value.detail


async def test_known_keys_keep_working_while_the_host_is_down(
    http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    clock = Clock()
    jwks = client(http, jwks_host.url, clock)
    await jwks.keys_for(keys[0].kid)
    jwks_host.status = 503
    clock.now += 601  # stale: a refresh is attempted and fails
    assert keys[0].kid in await jwks.keys_for(keys[0].kid)
    clock.now += 31
    with pytest.raises(UpstreamUnavailable):
        await jwks.keys_for(keys[1].kid)  # unknown while the host is down: retry later
    jwks_host.status = 200
    clock.now += 31
    assert keys[0].kid in await jwks.keys_for(keys[0].kid)


def test_parse_jwks_keeps_only_usable_signing_keys(keys: list[SigningKey]) -> None:
    good = keys[0].jwk()
    no_kid = {k: v for k, v in keys[1].jwk().items() if k != "kid"}
    encryption = dict(keys[2].jwk(), use="enc")
    broken = {"kid": "broken", "kty": "RSA", "n": "!!", "e": "AQAB"}
    parsed = parse_jwks({"keys": [good, no_kid, encryption, broken, "junk"]})
    assert list(parsed) == [keys[0].kid]
    assert parse_jwks({"nokeys": 1}) == {} and parse_jwks([]) == {}


def _malformed(good: dict[str, Any], case: str) -> bytes:
    """A key set whose only entry cannot be used, or a document json cannot read at all."""
    if case == "nested":
        depth = 100_000  # well under MAX_JWKS_BYTES, far deeper than json.loads recurses
        return b'{"keys":' + b"[" * depth + b"]" * depth + b"}"
    field, value = {
        "alg-list": ("alg", ["RS256"]),
        "alg-object": ("alg", {"name": "RS256"}),
        "kty-list": ("kty", ["RSA"]),
        "use-object": ("use", {"sig": True}),
        "kid-number": ("kid", 7),
    }[case]
    return json.dumps({"keys": [{**good, field: value}]}).encode()


MALFORMED = ["alg-list", "alg-object", "kty-list", "use-object", "kid-number", "nested"]


def test_parse_jwks_skips_entries_whose_fields_are_not_strings(keys: list[SigningKey]) -> None:
    good = keys[0].jwk()
    odd = [{**keys[1].jwk(), "alg": ["RS256"]}, {**keys[2].jwk(), "kty": {"RSA": 1}}]
    assert list(parse_jwks({"keys": [*odd, good]})) == [keys[0].kid]


@pytest.mark.parametrize("case", MALFORMED)
async def test_an_unusable_key_set_is_the_host_being_unavailable(
    case: str, http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    jwks_host.document = _malformed(keys[0].jwk(), case)
    with pytest.raises(UpstreamUnavailable) as info:
        await client(http, jwks_host.url, Clock()).keys_for(keys[0].kid)
    assert info.value.status == 503 and info.value.code == "jwks_unavailable"


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_refresh_that_gets_an_unusable_key_set_keeps_the_good_keys(
    case: str, http: httpx.AsyncClient, jwks_host: JwksHost, keys: list[SigningKey]
) -> None:
    clock = Clock()
    jwks = client(http, jwks_host.url, clock)
    await jwks.keys_for(keys[0].kid)
    jwks_host.document = _malformed(keys[1].jwk(), case)
    clock.now += 601  # stale: the refresh gets the malformed document
    assert keys[0].kid in await jwks.keys_for(keys[0].kid)
    assert jwks_host.hits == 2
    clock.now += 31
    with pytest.raises(UpstreamUnavailable) as info:  # a key only the junk could hold
        await jwks.keys_for(keys[1].kid)
    assert info.value.code == "jwks_unavailable"
    # the good entries of a set with one malformed entry are taken
    good_and_odd = {"keys": [keys[0].jwk(), keys[1].jwk(), {**keys[2].jwk(), "alg": ["RS256"]}]}
    jwks_host.document = json.dumps(good_and_odd).encode()
    clock.now += 31
    assert set(await jwks.keys_for(keys[1].kid)) == {keys[0].kid, keys[1].kid}
