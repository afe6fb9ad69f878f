"""Act-as-user tokens: the grant request, caching until near expiry, one fetch at a time."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from app.confluence.user_token import GRANT_TYPE, UserGrant, UserTokens
from app.errors import PermanentFailure, TransientFailure

SECRET = "tenant-shared-secret-" + "k" * 20
GRANT = UserGrant(
    client_key="ck-1",
    oauth_client_id="oauth-1",
    base_url="https://x.atlassian.net/wiki",
    shared_secret=SECRET,
)


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def auth_server(calls: list[dict[str, list[str]]], expires_in: int = 900) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url == "https://auth.test/oauth2/token"
        form = parse_qs(request.content.decode())
        calls.append(form)
        await asyncio.sleep(0.01)
        return httpx.Response(
            200,
            json={
                "access_token": f"tok-{len(calls)}",
                "expires_in": expires_in,
                "token_type": "Bearer",
            },
        )

    return httpx.MockTransport(handler)


async def test_grant_request_and_assertion() -> None:
    calls: list[dict[str, list[str]]] = []
    clock = Clock()
    tokens = UserTokens(
        httpx.AsyncClient(transport=auth_server(calls)),
        auth_server="https://auth.test",
        clock=clock,
    )
    assert await tokens.token(GRANT, "557058:u1", ["write", "read"]) == "tok-1"
    form = calls[0]
    assert form["grant_type"] == [GRANT_TYPE]
    assert form["scope"] == ["READ WRITE"]
    claims = jwt.decode(
        form["assertion"][0],
        SECRET,
        algorithms=["HS256"],
        audience="https://oauth-2-authorization-server.services.atlassian.com",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "urn:atlassian:connect:useraccountid:557058:u1"
    assert claims["iss"] == "urn:atlassian:connect:clientid:oauth-1"
    assert claims["tnt"] == GRANT.base_url
    assert claims["iat"] == int(clock.now)
    assert SECRET not in repr(GRANT)


async def test_cached_until_shortly_before_expiry_and_per_user() -> None:
    calls: list[dict[str, list[str]]] = []
    clock = Clock()
    tokens = UserTokens(
        httpx.AsyncClient(transport=auth_server(calls)),
        auth_server="https://auth.test",
        margin=30,
        clock=clock,
    )
    first = await asyncio.gather(*(tokens.token(GRANT, "u1") for _ in range(5)))
    assert first == ["tok-1"] * 5 and len(calls) == 1
    assert await tokens.token(GRANT, "u2") == "tok-2"
    clock.now += 900 - 31
    assert await tokens.token(GRANT, "u1") == "tok-1"
    clock.now += 2
    assert await tokens.token(GRANT, "u1") == "tok-3"
    provide = tokens.provider(GRANT, "u1")
    assert await provide() == "tok-3"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500), TransientFailure),
        (httpx.Response(429), TransientFailure),
        (httpx.Response(401, json={"error": "invalid_grant"}), PermanentFailure),
        (httpx.Response(200, text="nope"), TransientFailure),
        (httpx.Response(200, json={"expires_in": 5}), TransientFailure),
    ],
)
async def test_failures(response: httpx.Response, error: type[Exception]) -> None:
    tokens = UserTokens(
        httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)),
        auth_server="https://auth.test",
    )
    with pytest.raises(error) as info:
        await tokens.token(GRANT, "u1")
    assert SECRET not in str(info.value)


async def test_unreachable_server_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    tokens = UserTokens(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)), auth_server="https://auth.test"
    )
    with pytest.raises(TransientFailure):
        await tokens.token(GRANT, "u1")
