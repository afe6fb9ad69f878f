"""Auth modes: what each sends, where each goes, and that secrets stay out of text."""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest

from app.atlassian.connect_jwt import QshMismatch, verify_connect_token
from app.budget.hook import Unmetered
from app.confluence import ConfluenceClient, Site
from tests.confluence.fake import FakeConfluence

GATEWAY = "https://api.atlassian.com/ex/confluence/0f1e2d3c-aaaa-bbbb-cccc-000000000001"


async def test_connect_jwt_signs_each_request_with_its_own_qsh() -> None:
    secret = secrets.token_urlsafe(32)
    fake = FakeConfluence()
    space = fake.add_space("DEV")
    site = Site.connect(
        tenant="client-key-1",
        base_url="https://acme.atlassian.net/wiki",
        app_key="confluence-reactor",
        shared_secret=secret,
    )
    async with httpx.AsyncClient(transport=fake.transport) as http:
        client = ConfluenceClient(http, site, Unmetered())
        await client.get_space(space["id"])
        _ = [p async for p in client.iter_space_pages(space["id"], title="Home")]
    tokens = []
    for request in fake.requests:
        scheme, _, token = request.headers["Authorization"].partition(" ")
        assert scheme == "JWT"
        claims = verify_connect_token(
            token,
            secret_for=lambda iss: secret if iss == "confluence-reactor" else None,
            method=request.method,
            url=request.url.raw_path.decode(),
            base_url="https://acme.atlassian.net/wiki",
        )
        assert claims.issuer == "confluence-reactor" and claims.expires_at - claims.issued_at == 180
        tokens.append(claims.qsh)
    assert len(set(tokens)) == 2  # bound to each request's path and query
    assert secret not in repr(site) and secret not in repr(site.auth)


def test_connect_jwt_ignores_a_fragment_when_it_binds_the_request() -> None:
    from app.atlassian import qsh
    from app.confluence.auth import ConnectJWTAuth

    auth = ConnectJWTAuth(
        app_key="confluence-reactor",
        shared_secret=secrets.token_urlsafe(32),
        base_url="https://acme.atlassian.net/wiki",
    )
    hashes = []
    for url in ("/wiki/api/v2/pages/1?b=2&a=1", "/wiki/api/v2/pages/1?b=2&a=1#top"):
        request = httpx.Request("GET", "https://acme.atlassian.net" + url)
        signed = next(auth.auth_flow(request))
        token = signed.headers["Authorization"].removeprefix("JWT ")
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        hashes.append(claims["qsh"])
    expected = qsh.query_string_hash(
        "GET",
        "https://acme.atlassian.net/wiki/api/v2/pages/1?b=2&a=1",
        "https://acme.atlassian.net/wiki",
    )
    assert hashes == [expected, expected]


async def test_connect_token_for_another_path_does_not_verify() -> None:
    site = Site.connect(
        tenant="t", base_url="https://acme.atlassian.net/wiki", app_key="k", shared_secret="s" * 32
    )
    from app.confluence.auth import ConnectJWTAuth

    assert isinstance(site.auth, ConnectJWTAuth)
    token = site.auth.token_for("GET", "https://acme.atlassian.net/wiki/api/v2/pages/1")
    with pytest.raises(QshMismatch):
        verify_connect_token(
            token,
            secret_for=lambda iss: "s" * 32,
            method="GET",
            url="/wiki/api/v2/pages/2",
            base_url="https://acme.atlassian.net/wiki",
        )


async def test_forge_system_token_is_read_per_request_against_the_gateway() -> None:
    fake = FakeConfluence(api_root=GATEWAY)
    space = fake.add_space("DEV")
    issued = iter(["token-a", "token-b"])

    async def system_token() -> str:
        return next(issued)

    site = Site.forge(tenant="forge:cloud", api_base_url=GATEWAY + "/", token=system_token)
    async with httpx.AsyncClient(transport=fake.transport) as http:
        client = ConfluenceClient(http, site, Unmetered())
        await client.get_space(space["id"])
        await client.get_space(space["id"])
    assert [r.headers["Authorization"] for r in fake.requests] == [
        "Bearer token-a",
        "Bearer token-b",
    ]
    assert all(str(r.url).startswith(GATEWAY + "/wiki/api/v2/spaces/") for r in fake.requests)
    assert "token" not in repr(site.auth).replace("BearerAuth", "")


async def test_oauth_bearer_through_the_gateway() -> None:
    site = Site.oauth(tenant="t", cloud_id="0f1e2d3c-aaaa-bbbb-cccc-000000000001", token="oauth-at")
    assert site.api_root == GATEWAY and site.v2("/pages") == GATEWAY + "/wiki/api/v2/pages"
    fake = FakeConfluence(api_root=GATEWAY)
    async with httpx.AsyncClient(transport=fake.transport) as http:
        space = fake.add_space("X")
        await ConfluenceClient(http, site, Unmetered()).get_space(space["id"])
    assert fake.requests[-1].headers["Authorization"] == "Bearer oauth-at"
    assert "oauth-at" not in repr(site)


async def test_basic_auth_for_scripts() -> None:
    site = Site.basic(site_url="https://acme.atlassian.net/", email="me@acme.test", api_token="tok")
    assert site.wiki_base == "https://acme.atlassian.net/wiki"
    assert site.v1("/search") == "https://acme.atlassian.net/wiki/rest/api/search"
    fake = FakeConfluence()
    space = fake.add_space("X")
    async with httpx.AsyncClient(transport=fake.transport) as http:
        await ConfluenceClient(http, site, Unmetered()).get_space(space["id"])
    expected = base64.b64encode(b"me@acme.test:tok").decode()
    assert fake.requests[-1].headers["Authorization"] == f"Basic {expected}"
    assert "tok" not in repr(site).replace("acme", "")


def test_sites_reject_relative_urls() -> None:
    with pytest.raises(ValueError):
        Site.basic(site_url="acme.atlassian.net", email="e", api_token="t")

    async def token() -> str:
        return "x"

    with pytest.raises(ValueError):
        Site.forge(tenant="t", api_base_url="/ex/confluence/1", token=token)


def test_bearer_auth_refuses_sync_clients() -> None:
    site = Site.oauth(tenant="t", cloud_id="c", token="x")
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    with httpx.Client(transport=transport) as http, pytest.raises(RuntimeError):
        http.get("https://x.test/", auth=site.auth)
