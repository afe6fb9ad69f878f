"""Forge Invocation Token verification without I/O: keys in, verdicts out."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from app.atlassian import forge_token as ft
from app.errors import VerificationError
from tests.forge.conftest import (
    API_BASE_URL,
    APP_ID,
    CLOUD_ID,
    INSTALLATION_ID,
    INSTALLATION_UUID,
    SigningKey,
    fit_claims,
    forge_unsigned,
    mint,
    system_token,
)

NOW = 1_700_175_149.0


def keyset(*keys: SigningKey) -> dict[str, jwt.PyJWK]:
    return {k.kid: jwt.PyJWK(k.jwk()) for k in keys}


def verify(token: str, keys: dict[str, jwt.PyJWK], **kwargs: Any) -> ft.Invocation:
    kwargs.setdefault("app_id", APP_ID)
    kwargs.setdefault("now", NOW)
    return ft.verify_token(token, keys, **kwargs)


def refused(token: str, keys: dict[str, jwt.PyJWK], **kwargs: Any) -> VerificationError:
    with pytest.raises(ft.ForgeTokenError) as info:
        verify(token, keys, **kwargs)
    err = info.value
    assert err.status == 401
    assert token not in str(err) and token not in err.detail
    return err


def test_a_valid_token_yields_the_invocation(keys: list[SigningKey]) -> None:
    token = mint(keys[0], fit_claims(NOW))
    got = verify(token, keyset(keys[0], keys[1]))
    assert got.installation_id == INSTALLATION_ID
    assert got.cloud_id == CLOUD_ID
    assert got.api_base_url == API_BASE_URL
    assert got.environment_type == "PRODUCTION"
    assert got.license_active is True
    assert got.module_key == "ep-events"
    assert got.app_version == "2.0.0"
    assert got.expires_at == int(NOW) + 25
    assert got.issued_at == int(NOW)  # orders the system tokens of the installation
    assert got.ic_label is None


def test_cloud_id_falls_back_to_the_api_base_url(keys: list[SigningKey]) -> None:
    claims = fit_claims(NOW)
    del claims["app"]["installation"]
    assert verify(mint(keys[0], claims), keyset(keys[0])).cloud_id == CLOUD_ID


def test_alg_none_is_refused(keys: list[SigningKey]) -> None:
    token = forge_unsigned({"alg": "none", "kid": keys[0].kid}, fit_claims(NOW), None)
    assert refused(token, keyset(keys[0])).code == ft.UNSUPPORTED_ALGORITHM


def test_hs256_signed_with_the_public_key_is_refused(keys: list[SigningKey]) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": keys[0].kid}
    token = forge_unsigned(header, fit_claims(NOW), keys[0].public_pem)
    assert refused(token, keyset(keys[0])).code == ft.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"iss": "forge/other"}, ft.WRONG_ISSUER),
        ({"aud": "ari:cloud:ecosystem::app/someone-else"}, ft.WRONG_AUDIENCE),
        ({"exp": int(NOW) - 11}, ft.EXPIRED),
        ({"nbf": int(NOW) + 11}, ft.NOT_YET_VALID),
        ({"iat": int(NOW) + 60, "nbf": int(NOW)}, ft.NOT_YET_VALID),
        ({"exp": "later"}, ft.INVALID_CLAIMS),
    ],
)
def test_bad_claims_are_refused(
    keys: list[SigningKey], overrides: dict[str, Any], code: str
) -> None:
    token = mint(keys[0], fit_claims(NOW, **overrides))
    assert refused(token, keyset(keys[0])).code == code


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat", "iss", "aud"])
def test_missing_registered_claims_are_refused(keys: list[SigningKey], claim: str) -> None:
    claims = fit_claims(NOW)
    del claims[claim]
    assert refused(mint(keys[0], claims), keyset(keys[0])).code in (
        ft.MISSING_CLAIM,
        ft.WRONG_AUDIENCE,
        ft.WRONG_ISSUER,
    )


def test_leeway_is_at_most_ten_seconds(keys: list[SigningKey]) -> None:
    nine_late = mint(keys[0], fit_claims(NOW, exp=int(NOW) - 9))
    assert verify(nine_late, keyset(keys[0])).installation_id == INSTALLATION_ID
    early = mint(keys[0], fit_claims(NOW, nbf=int(NOW) + 9, iat=int(NOW) + 9))
    assert verify(early, keyset(keys[0])).installation_id == INSTALLATION_ID
    twelve_late = mint(keys[0], fit_claims(NOW, exp=int(NOW) - 12))
    assert refused(twelve_late, keyset(keys[0]), leeway=60).code == ft.EXPIRED


def test_unknown_kid_and_a_wrong_key_under_a_known_kid(keys: list[SigningKey]) -> None:
    assert refused(mint(keys[1]), keyset(keys[0])).code == ft.UNKNOWN_KID
    impostor = mint(keys[1], fit_claims(NOW), kid=keys[0].kid)
    assert refused(impostor, keyset(keys[0])).code == ft.BAD_SIGNATURE


def test_header_problems(keys: list[SigningKey]) -> None:
    no_kid = jwt.encode(fit_claims(NOW), keys[0].private, algorithm="RS256")
    assert refused(no_kid, keyset(keys[0])).code == ft.MISSING_KID
    assert refused("not.a.jwt", keyset(keys[0])).code == ft.MALFORMED_TOKEN
    assert refused("garbage", keyset(keys[0])).code == ft.MALFORMED_TOKEN


def test_ic_label_is_refused_unless_allowed(keys: list[SigningKey]) -> None:
    token = mint(keys[0], fit_claims(NOW, icLabel="orange"))
    err = refused(token, keyset(keys[0]))
    assert err.code == ft.ISOLATED_CLOUD and "REACTOR_FORGE_ALLOW_IC_LABELS" in err.detail
    allowed = verify(token, keyset(keys[0]), allowed_ic_labels={"orange"})
    assert allowed.ic_label == "orange"
    assert refused(token, keyset(keys[0]), allowed_ic_labels={"blue"}).code == ft.ISOLATED_CLOUD
    evil = mint(keys[0], fit_claims(NOW, icLabel="../../evil.example/x"))
    err = refused(evil, keyset(keys[0]), allowed_ic_labels={"../../evil.example/x"})
    assert err.code == ft.ISOLATED_CLOUD


def test_the_app_claims_must_name_an_installation(keys: list[SigningKey]) -> None:
    claims = fit_claims(NOW)
    del claims["app"]["installationId"]
    assert refused(mint(keys[0], claims), keyset(keys[0])).code == ft.INVALID_CLAIMS
    claims = fit_claims(NOW)
    claims["app"]["apiBaseUrl"] = "http://api.atlassian.com/ex/confluence/x"
    assert refused(mint(keys[0], claims), keyset(keys[0])).code == ft.INVALID_CLAIMS
    claims = fit_claims(NOW)
    claims["app"]["id"] = "ari:cloud:ecosystem::app/other"
    assert refused(mint(keys[0], claims), keyset(keys[0])).code == ft.WRONG_AUDIENCE


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "JWT x.y.z"])
def test_bearer_header_is_required(header: str | None) -> None:
    with pytest.raises(ft.ForgeTokenError) as info:
        ft.bearer_token(header)
    assert info.value.code == ft.MISSING_TOKEN
    assert ft.bearer_token("bearer  a.b.c ") == "a.b.c"


def test_installation_ids_are_normalised_to_aris() -> None:
    assert ft.installation_ari(INSTALLATION_UUID) == INSTALLATION_ID
    assert ft.installation_ari(INSTALLATION_ID) == INSTALLATION_ID


def test_system_token_expiry_reads_exp_or_falls_back() -> None:
    now = time.time()
    assert ft.system_token_expiry(system_token(now + 7200), now) == int(now + 7200)
    fallback = ft.system_token_expiry("opaque-token", now)
    assert fallback == int(now) + ft.SYSTEM_TOKEN_FALLBACK_TTL
    # An absurd expiry would make Redis refuse to keep the token (every Forge call a 503).
    far = jwt.encode({"exp": 10**300, "sub": "app"}, "not-atlassians-key-" + "x" * 16)
    assert ft.system_token_expiry(far, now) == int(now) + ft.SYSTEM_TOKEN_MAX_TTL
    endless = jwt.encode({"exp": 1e300, "sub": "app"}, "not-atlassians-key-" + "x" * 16)
    assert ft.system_token_expiry(endless, now) == int(now) + ft.SYSTEM_TOKEN_MAX_TTL


def test_a_system_tokens_claimed_expiry_is_bounded_to_a_couple_of_hours() -> None:
    """The claim is not verified: a token claiming a day is kept two hours at most (Atlassian's
    live about one, and the hourly trigger brings the next)."""
    now = time.time()
    assert ft.SYSTEM_TOKEN_MAX_TTL == 2 * 3600
    day = system_token(now + 24 * 3600)
    assert ft.system_token_expiry(day, now) == int(now) + 2 * 3600
    assert ft.system_token_expiry(system_token(now + 3600), now) == int(now + 3600)


@pytest.mark.parametrize("claim", ["iat", "exp", "nbf"])
def test_a_time_claim_that_is_not_finite_is_refused(keys: list[SigningKey], claim: str) -> None:
    """json reads NaN: it compares false with everything, so it would pass the time checks."""
    token = mint(keys[0], fit_claims(NOW, **{claim: float("nan")}))
    assert refused(token, keyset(keys[0])).code == ft.INVALID_CLAIMS
