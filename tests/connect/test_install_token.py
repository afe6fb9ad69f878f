"""Signed installs, pure: kid safety, RS256 only, audience, issuer, qsh, times; payloads."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from app.atlassian.connect_jwt import TokenRejected, b64url_encode
from app.atlassian.install_token import (
    is_safe_key_id,
    parse_lifecycle_payload,
    read_install_key_id,
    verify_install_token,
)
from app.errors import MalformedRequest

from .conftest import InstallKey, install_body, install_claims

APP = "https://reactor.test"
NOW = 1_800_000_000
PATH = "/connect/installed"


def token_for(key: InstallKey, **overrides: Any) -> str:
    claims = install_claims(client_key="ck-1", method="POST", path=PATH, aud=APP, now=NOW)
    claims.update(overrides)
    return key.sign({k: v for k, v in claims.items() if v is not None})


def verify(key: InstallKey, token: str, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "public_key": key.private.public_key(),
        "method": "POST",
        "url": PATH,
        "app_base_url": APP,
        "client_key": "ck-1",
        "now": NOW,
    }
    args.update(kwargs)
    return verify_install_token(token, **args)


def reason(key: InstallKey, token: str, **kwargs: Any) -> str:
    with pytest.raises(TokenRejected) as info:
        verify(key, token, **kwargs)
    return info.value.code


def test_valid_signed_install(install_key: InstallKey) -> None:
    claims = verify(install_key, token_for(install_key))
    assert claims.issuer == "ck-1"
    assert read_install_key_id(token_for(install_key)) == install_key.kid


def test_audience_may_be_a_list_and_trailing_slash_is_ignored(install_key: InstallKey) -> None:
    assert verify(install_key, token_for(install_key, aud=[APP + "/"])).issuer == "ck-1"


@pytest.mark.parametrize(
    "kid",
    [
        "../../evil",
        "..%2Fevil",
        "%2F",
        "key?x=1",
        "user@evil.example",
        "a/b",
        "key.pem",
        "key#frag",
        "k" * 129,
        "",
        " key",
        "clé",
        "a\\b",
    ],
)
def test_unsafe_kids_are_refused(install_key: InstallKey, kid: str) -> None:
    assert not is_safe_key_id(kid)
    token = token_for(InstallKey(install_key.private, kid))
    with pytest.raises(TokenRejected) as info:
        read_install_key_id(token)
    assert info.value.code == "bad_key_id"


def test_missing_or_non_string_kid(install_key: InstallKey) -> None:
    claims = install_claims(client_key="ck-1", method="POST", path=PATH, aud=APP, now=NOW)
    without_kid = jwt.encode(claims, install_key.private, algorithm="RS256")
    _, body, sig = without_kid.split(".")
    numeric_kid = b64url_encode(json.dumps({"alg": "RS256", "kid": 5}).encode())
    for token in (without_kid, f"{numeric_kid}.{body}.{sig}"):
        with pytest.raises(TokenRejected) as info:
            read_install_key_id(token)
        assert info.value.code == "bad_key_id"


def test_hs256_install_is_refused(install_key: InstallKey) -> None:
    claims = install_claims(client_key="ck-1", method="POST", path=PATH, aud=APP, now=NOW)
    token = jwt.encode(claims, "a-shared-secret-long-enough-for-hs256!", algorithm="HS256")
    assert reason(install_key, token) == "wrong_algorithm"


def test_signed_by_another_key(install_key: InstallKey) -> None:
    other = InstallKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "k2")
    assert reason(install_key, token_for(other)) == "bad_signature"


def test_wrong_audience(install_key: InstallKey) -> None:
    assert reason(install_key, token_for(install_key, aud="https://evil.test")) == "wrong_audience"
    assert reason(install_key, token_for(install_key, aud=None)) == "wrong_audience"


def test_issuer_must_be_the_body_client_key(install_key: InstallKey) -> None:
    token = token_for(install_key)
    assert reason(install_key, token, client_key="ck-2") == "issuer_mismatch"


def test_qsh_and_context_qsh(install_key: InstallKey) -> None:
    token = token_for(install_key)
    assert reason(install_key, token, url="/connect/uninstalled") == "qsh_mismatch"
    assert reason(install_key, token, method="PUT") == "qsh_mismatch"
    ctx = token_for(install_key, qsh="context-qsh")
    assert reason(install_key, ctx) == "context_qsh_not_allowed"


def test_times(install_key: InstallKey) -> None:
    assert reason(install_key, token_for(install_key), now=NOW + 300) == "expired"
    assert reason(install_key, token_for(install_key), now=NOW - 100) == "not_yet_valid"
    assert reason(install_key, token_for(install_key, exp=None)) == "invalid_claims"


def test_qsh_is_relative_to_our_base_path(install_key: InstallKey) -> None:
    token = token_for(install_key, aud="https://host.test/reactor")
    got = verify(
        install_key,
        token,
        url="/reactor/connect/installed",
        app_base_url="https://host.test/reactor",
    )
    assert got.issuer == "ck-1"


def test_lifecycle_payload_parsing() -> None:
    body = install_body("ck-1", "s" * 32, installation_id="ari:cloud:ecosystem::installation/1")
    payload = parse_lifecycle_payload(body, require_secret=True)
    assert payload.client_key == "ck-1"
    assert payload.installation_id == "ari:cloud:ecosystem::installation/1"
    assert "s" * 32 not in repr(payload)
    bad_bodies: list[Any] = [
        [],
        {},
        {**body, "clientKey": 5},
        {**body, "baseUrl": "ftp://x"},
        {**body, "baseUrl": None},
        {**body, "sharedSecret": "short"},
    ]
    for bad in bad_bodies:
        with pytest.raises(MalformedRequest):
            parse_lifecycle_payload(bad, require_secret=True)
    uninstall = install_body("ck-1", "", event="uninstalled")
    assert parse_lifecycle_payload(uninstall, require_secret=False).shared_secret is None
