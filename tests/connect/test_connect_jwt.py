"""Pure verification of Connect HS256 tokens: every attack of the issue, one reason each."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.atlassian.connect_jwt import (
    MAX_TOKEN_BYTES,
    TokenRejected,
    build_user_assertion,
    encode_connect_token,
    extract_token,
    read_unverified_issuer,
    verify_connect_token,
)
from app.atlassian.qsh import query_string_hash

SECRET = "s3cr3t-" + "x" * 40
TENANT = "tenant-a"
NOW = 1_800_000_000
URL = "/connect/webhooks/page_created?lic=none"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes = SECRET.encode()) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": TENANT,
        "iat": NOW - 10,
        "exp": NOW + 170,
        "qsh": query_string_hash("POST", URL),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def verify(token: str, *, method: str = "POST", url: str = URL, now: int = NOW) -> Any:
    return verify_connect_token(
        token,
        secret_for=lambda iss: SECRET if iss == TENANT else None,
        method=method,
        url=url,
        now=now,
        leeway=30,
    )


def reason(token: str, **kwargs: Any) -> str:
    with pytest.raises(TokenRejected) as info:
        verify(token, **kwargs)
    assert SECRET not in str(info.value)
    assert len(token) < 8 or token not in str(info.value)
    return info.value.code


HS = {"alg": "HS256", "typ": "JWT"}


def test_a_good_token_verifies() -> None:
    got = verify(forge(HS, claims(sub="557058:user", context={"user": {}})))
    assert (got.issuer, got.subject, got.expires_at) == (TENANT, "557058:user", NOW + 170)


def test_encode_round_trip_and_pyjwt_agrees() -> None:
    token = encode_connect_token(issuer=TENANT, secret=SECRET, method="POST", url=URL, now=NOW)
    assert verify(token).qsh == query_string_hash("POST", URL)
    decoded = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert decoded == {"iss": TENANT, "iat": NOW, "exp": NOW + 180, "qsh": decoded["qsh"]}


def test_alg_none_is_refused() -> None:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    assert reason(f"{head}.{body}.") == "wrong_algorithm"


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "ES256", "none", "hs256", None])
def test_only_hs256_is_accepted(alg: str | None) -> None:
    assert reason(forge({"alg": alg, "typ": "JWT"}, claims())) == "wrong_algorithm"


def test_rs256_token_on_a_webhook_is_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), private, algorithm="RS256", headers={"kid": "k1"})
    assert reason(token) == "wrong_algorithm"


def test_key_confusion_hs256_signed_with_the_rsa_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert reason(forge(HS, claims(), key=pem)) == "bad_signature"


@pytest.mark.parametrize("missing", ["iat", "exp", "qsh"])
def test_missing_claims(missing: str) -> None:
    assert reason(forge(HS, claims(**{missing: None}))) == "invalid_claims"


def test_missing_issuer() -> None:
    assert reason(forge(HS, claims(iss=None))) == "invalid_claims"


@pytest.mark.parametrize(
    "bad",
    [{"iat": "yesterday"}, {"exp": True}, {"qsh": 12}, {"sub": 5}, {"context": []}, {"aud": 3}],
)
def test_malformed_claims(bad: dict[str, Any]) -> None:
    assert reason(forge(HS, claims(**bad))) == "invalid_claims"


def test_extra_claims_are_ignored_but_registered_ones_are_enforced() -> None:
    assert verify(forge(HS, claims(jti="x", custom={"a": 1}, aud=[TENANT]))).issuer == TENANT
    assert reason(forge(HS, claims(aud="someone-else"))) == "invalid_claims"
    assert reason(forge(HS, claims(nbf=NOW + 300))) == "not_yet_valid"
    assert reason(forge(HS, claims(exp=NOW - 100, iat=NOW))) == "invalid_claims"


def test_expired_and_leeway() -> None:
    assert verify(forge(HS, claims(iat=NOW - 200, exp=NOW - 29))).issuer == TENANT
    assert reason(forge(HS, claims(iat=NOW - 400, exp=NOW - 30))) == "expired"


def test_issued_in_the_future() -> None:
    assert verify(forge(HS, claims(iat=NOW + 29))).issuer == TENANT
    assert reason(forge(HS, claims(iat=NOW + 31, exp=NOW + 200))) == "not_yet_valid"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", URL),
        ("GET", URL),
        ("POST", "/connect/webhooks/page_updated?lic=none"),
        ("POST", "/connect/webhooks/page_created"),
        ("POST", "/connect/webhooks/page_created?lic=none&x=1"),
        ("POST", "/connect/webhooks/page_created?lic=nonE"),
    ],
)
def test_qsh_mismatch_by_method_path_or_query(method: str, url: str) -> None:
    assert reason(forge(HS, claims()), method=method, url=url) == "qsh_mismatch"


def test_context_qsh_is_refused_unless_allowed() -> None:
    token = forge(HS, claims(qsh="context-qsh"))
    assert reason(token) == "context_qsh_not_allowed"
    got = verify_connect_token(
        token,
        secret_for=lambda _: SECRET,
        method="GET",
        url="/anything",
        now=NOW,
        allow_context_qsh=True,
    )
    assert got.qsh == "context-qsh"


def test_unknown_issuer() -> None:
    assert reason(forge(HS, claims(iss="tenant-b"))) == "unknown_tenant"


def test_a_token_over_8_kib_is_refused_before_parsing() -> None:
    token = forge(HS, claims(pad="x" * MAX_TOKEN_BYTES))
    assert reason(token) == "token_too_large"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.abc",
        "eyJhbGciOiJIUzI1NiJ9.e.abc",  # 1 char: not base64
        b64(b"not json") + "." + b64(b"{}") + ".abc",
        b64(b"[1,2]") + "." + b64(b"{}") + ".abc",
        b64(json.dumps(HS).encode()) + "." + b64(b"\xff\xfe") + ".abc",
        b64(json.dumps(HS).encode()) + "." + b64(b'"str"') + ".abc",
        "é.é.é",
        # standard base64 or padding instead of unpadded base64url
        b64(json.dumps(HS).encode()) + "." + b64(b"{}") + "=.abc",
        b64(json.dumps(HS).encode()) + "." + b64(b"{}")[:2] + "+/" + ".abc",
        b64(json.dumps(HS).encode()) + ".e30=.abc",
        b64(json.dumps(HS).encode()) + ".e30.ab=c",
        b64(json.dumps(HS).encode()) + ".e30.a b",
    ],
)
def test_broken_base64_or_json(token: str) -> None:
    assert reason(token) == "malformed_token"


def test_signature_tampering_and_secret_of_another_tenant() -> None:
    token = forge(HS, claims())
    head, body, sig = token.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert reason(f"{head}.{body}.{flipped}") == "bad_signature"
    assert reason(forge(HS, claims(), key=b"secret-of-tenant-b" * 3)) == "bad_signature"
    other = b64(json.dumps(claims(iss="tenant-a", qsh="0" * 64)).encode())
    assert reason(f"{head}.{other}.{sig}") == "bad_signature"


def test_read_unverified_issuer_and_extract_token() -> None:
    token = forge(HS, claims())
    assert read_unverified_issuer(token) == TENANT
    assert extract_token(f"JWT {token}", "") == token
    assert extract_token(f"jwt  {token} ", "") == token
    assert extract_token(None, f"a=1&jwt={token}") == token
    for header, query in [(None, ""), ("Bearer abc", ""), ("JWT ", ""), (None, "jwt=")]:
        with pytest.raises(TokenRejected) as info:
            extract_token(header, query)
        assert info.value.code == "missing_token"


def test_user_assertion_claims() -> None:
    token = build_user_assertion(
        oauth_client_id="oauth-1",
        secret=SECRET,
        account_id="557058:abc",
        tenant_base_url="https://x.atlassian.net/wiki",
        now=NOW,
    )
    got = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="https://oauth-2-authorization-server.services.atlassian.com",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert got == {
        "iss": "urn:atlassian:connect:clientid:oauth-1",
        "sub": "urn:atlassian:connect:useraccountid:557058:abc",
        "tnt": "https://x.atlassian.net/wiki",
        "aud": "https://oauth-2-authorization-server.services.atlassian.com",
        "iat": NOW,
        "exp": NOW + 60,
    }
