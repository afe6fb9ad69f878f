"""Verified Connect tokens remembered per request target: what a hit must still check.

Unit tests of :class:`VerifiedTokens`, then the webhook endpoint reusing one token the way
Confluence does (every webhook of one type and second carries the same token): the second
delivery skips the signature check, yet a replaced secret, an expired window or a disabled
tenant still refuse it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from app.atlassian.connect_jwt import ConnectClaims, encode_connect_token, parse_token
from app.atlassian.verified_tokens import MAX_KEY_CHARS, VerifiedTokens
from app.web import connect_auth

from .conftest import FIXTURES_DIR, ConnectApp, install_body, signed

NOW = 1_800_000_000
PATH = "/connect/webhooks/page_updated"


def claims(*, iat: int = NOW, exp: int = NOW + 180, **raw: Any) -> ConnectClaims:
    fields = {"iss": "ck-1", "iat": iat, "exp": exp, "qsh": "q", **raw}
    return ConnectClaims("ck-1", iat, exp, "q", raw=fields)


def test_a_remembered_token_is_found_for_its_target_only() -> None:
    cache = VerifiedTokens()
    cache.remember("tok", "POST", PATH, secret="s", claims=claims())
    assert cache.issuer("tok", "POST", PATH) == "ck-1"
    assert cache.holds("tok", "POST", PATH, secret="s", now=NOW, leeway=0)
    assert cache.issuer("tok", "GET", PATH) is None
    assert cache.issuer("tok", "POST", PATH + "?lic=none") is None
    assert cache.issuer("tok2", "POST", PATH) is None
    assert not cache.holds("tok2", "POST", PATH, secret="s", now=NOW, leeway=0)


def test_a_replaced_secret_forgets_the_token() -> None:
    cache = VerifiedTokens()
    cache.remember("tok", "POST", PATH, secret="old", claims=claims())
    assert not cache.holds("tok", "POST", PATH, secret="new", now=NOW, leeway=0)
    assert len(cache) == 0  # gone: even the old secret no longer finds it
    assert not cache.holds("tok", "POST", PATH, secret="old", now=NOW, leeway=0)


def test_no_secret_material_is_kept() -> None:
    cache = VerifiedTokens()
    secret = "a-shared-secret-of-the-tenant-0123456789"
    cache.remember("tok", "POST", PATH, secret=secret, claims=claims())
    kept = repr(list(cache._entries.values()))
    assert secret not in kept and "shared" not in kept


@pytest.mark.parametrize(
    ("now", "leeway", "holds"),
    [
        (NOW + 179, 0, True),
        (NOW + 180, 0, False),  # exp is exclusive, as in verify_connect_token
        (NOW + 209, 30, True),
        (NOW + 210, 30, False),
        (NOW - 1, 0, False),  # issued in the future
        (NOW - 30, 30, True),
    ],
)
def test_the_time_window_is_checked_on_every_hit(now: int, leeway: int, holds: bool) -> None:
    cache = VerifiedTokens()
    cache.remember("tok", "POST", PATH, secret="s", claims=claims())
    assert cache.holds("tok", "POST", PATH, secret="s", now=now, leeway=leeway) is holds
    assert len(cache) == int(holds)


def test_not_before_is_checked_on_every_hit() -> None:
    cache = VerifiedTokens()
    cache.remember("tok", "POST", PATH, secret="s", claims=claims(nbf=NOW + 60))
    assert not cache.holds("tok", "POST", PATH, secret="s", now=NOW + 59, leeway=0)
    cache.remember("tok", "POST", PATH, secret="s", claims=claims(nbf=NOW + 60))
    assert cache.holds("tok", "POST", PATH, secret="s", now=NOW + 60, leeway=0)


def test_the_oldest_entry_leaves_when_full() -> None:
    cache = VerifiedTokens(capacity=2)
    for token in ("a", "b", "c"):
        cache.remember(token, "POST", PATH, secret="s", claims=claims())
    assert len(cache) == 2
    assert cache.issuer("a", "POST", PATH) is None
    assert cache.issuer("b", "POST", PATH) == cache.issuer("c", "POST", PATH) == "ck-1"
    cache.remember("b", "POST", PATH, secret="s", claims=claims())  # again: no eviction
    assert cache.issuer("c", "POST", PATH) == "ck-1"
    with pytest.raises(ValueError):
        VerifiedTokens(capacity=0)


def test_long_tokens_and_targets_are_not_remembered() -> None:
    cache = VerifiedTokens()
    long_target = PATH + "?pad=" + "a" * MAX_KEY_CHARS
    cache.remember("tok", "POST", long_target, secret="s", claims=claims())
    cache.remember("t" * MAX_KEY_CHARS, "POST", PATH, secret="s", claims=claims())
    assert len(cache) == 0


# The endpoint: one token, several deliveries.


def body(page: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES_DIR / "page_created.json").read_text())
    data["page"]["id"] = page
    data["page"]["idAsString"] = str(page)
    return data


async def deliver(app: ConnectApp, token: str, page: int) -> httpx.Response:
    return await app.client.post(PATH, json=body(page), headers={"Authorization": f"JWT {token}"})


async def disable(app: ConnectApp, client_key: str, secret: str) -> None:
    """Confluence disables the app on the tenant's site (a signed ``disabled`` callback)."""
    resp = await app.client.post(
        "/connect/disabled",
        json=install_body(client_key, secret, event="disabled"),
        headers=signed(app, client_key, "/connect/disabled"),
    )
    assert resp.status_code == 204, resp.text


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens that went through the full verification (signature included)."""
    seen: list[str] = []
    real = connect_auth.verify_connect_token

    def counting(token: Any, **kwargs: Any) -> ConnectClaims:
        seen.append(token.signing_input.decode())
        return real(token, **kwargs)

    monkeypatch.setattr(connect_auth, "verify_connect_token", counting)
    return seen


async def test_a_token_seen_before_skips_the_signature_check(
    connect_app: ConnectApp, verifications: list[str]
) -> None:
    client_key, secret = await connect_app.install()
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=PATH)
    for page in (1, 2, 3):
        assert (await deliver(connect_app, token, page)).status_code == 204
    assert len(verifications) == 1
    for page in (1, 2, 3):  # each delivery is its own event, stored
        stored = await connect_app.app.state.redis.exists(
            f"{connect_app.settings.redis_prefix}content:{client_key}:{page}"
        )
        assert stored == 1
    forged = token[: token.rindex(".") + 1] + "A" * 43  # same claims, other signature
    resp = await deliver(connect_app, forged, 4)
    assert resp.status_code == 401 and resp.json()["error"] == "bad_signature"
    assert len(verifications) == 2


async def test_a_reinstall_with_a_new_secret_refuses_the_old_token(
    connect_app: ConnectApp, verifications: list[str]
) -> None:
    client_key, secret = await connect_app.install()
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=PATH)
    assert (await deliver(connect_app, token, 1)).status_code == 204
    await connect_app.install(client_key, uuid.uuid4().hex + uuid.uuid4().hex)
    resp = await deliver(connect_app, token, 2)
    assert resp.status_code == 401 and resp.json()["error"] == "bad_signature"
    assert len(verifications) == 2  # the remembered token was checked again, in full


async def test_an_expired_token_is_refused_though_it_was_verified(
    connect_app: ConnectApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_key, secret = await connect_app.install()
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=PATH)
    assert (await deliver(connect_app, token, 1)).status_code == 204
    exp = parse_token(token).claims["exp"]
    later = exp + connect_app.settings.jwt_leeway_seconds + 1
    monkeypatch.setattr(time, "time", lambda: float(later))
    resp = await deliver(connect_app, token, 2)
    assert resp.status_code == 401 and resp.json()["error"] == "expired"


async def test_a_disabled_tenant_is_refused_though_its_token_was_verified(
    connect_app: ConnectApp,
) -> None:
    client_key, secret = await connect_app.install()
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=PATH)
    assert (await deliver(connect_app, token, 1)).status_code == 204
    await disable(connect_app, client_key, secret)
    resp = await deliver(connect_app, token, 2)
    assert resp.status_code == 401 and resp.json()["error"] == "disabled_tenant"


async def test_the_routed_webhook_remembers_tokens_too(
    connect_app: ConnectApp, verifications: list[str]
) -> None:
    """Under a root path the webhook is served by its route, not the short cut: same cache."""
    client_key, secret = await connect_app.install()
    path = "/reactor" + PATH
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    transport = httpx.ASGITransport(app=connect_app.app, root_path="/reactor")
    async with httpx.AsyncClient(transport=transport, base_url=connect_app.settings.base_url) as c:
        for page in (1, 2, 3):
            resp = await c.post(path, json=body(page), headers={"Authorization": f"JWT {token}"})
            assert resp.status_code == 204, resp.text
    assert len(verifications) == 1


async def test_refused_requests_are_not_remembered(connect_app: ConnectApp) -> None:
    """Only a POST to a subscribed event of an active tenant takes a place in the cache."""
    client_key, secret = await connect_app.install()
    odd = "/connect/webhooks/nope?pad=" + "a" * 100
    token = encode_connect_token(issuer=client_key, secret=secret, method="GET", url=odd)
    assert (
        await connect_app.client.get(odd, headers={"Authorization": f"JWT {token}"})
    ).status_code == 405
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=odd)
    resp = await connect_app.client.post(odd, json={}, headers={"Authorization": f"JWT {token}"})
    assert resp.status_code == 404
    verified = connect_app.app.webhook_context.verified  # type: ignore[attr-defined]
    assert len(verified) == 0
    await disable(connect_app, client_key, secret)
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=PATH)
    assert (await deliver(connect_app, token, 1)).status_code == 401
    assert len(connect_app.app.webhook_context.verified) == 0  # type: ignore[attr-defined]


async def test_a_trailing_slash_under_a_root_path_is_authenticated_not_redirected(
    connect_app: ConnectApp,
) -> None:
    client_key, secret = await connect_app.install()
    path = "/reactor" + PATH + "/"
    transport = httpx.ASGITransport(app=connect_app.app, root_path="/reactor")
    async with httpx.AsyncClient(transport=transport, base_url=connect_app.settings.base_url) as c:
        anonymous = await c.post(path, json=body(1))
        token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
        signed = await c.post(path, json=body(1), headers={"Authorization": f"JWT {token}"})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "missing_token")
    assert (signed.status_code, signed.json()["error"]) == (404, "unknown_event")
