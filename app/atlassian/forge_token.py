"""Forge Invocation Token (FIT) verification: pure, given the public keys by ``kid``.

Forge Remote signs every call to a remote with a short-lived JWT (``Authorization: Bearer``).
The rules below follow Atlassian's "Forge Remote essentials" page and the official samples:
RS256 only, ``iss`` = ``forge/invocation-token``, ``aud`` = the app id (an ARI), ``exp`` and
``nbf`` checked with at most 10 s of clock leeway. A token that carries ``icLabel`` (Isolated
Cloud) is refused unless its label is explicitly allowed.

Two steps, so the caller can fetch keys in between without this module doing I/O:
:func:`inspect_token` reads the unverified header (algorithm, ``kid``, ``icLabel`` policy);
:func:`verify_token` checks signature and claims with the keys the caller found. Every refusal
is a :class:`~app.errors.VerificationError` whose ``code`` is one of the constants below; no
message ever contains the token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from app.errors import VerificationError

ISSUER = "forge/invocation-token"
ALGORITHM = "RS256"
MAX_LEEWAY_SECONDS = 10
IC_LABEL_PATTERN = re.compile(r"^[a-z0-9_-]{1,50}$")
INSTALLATION_ARI_PREFIX = "ari:cloud:ecosystem::installation/"
# Atlassian's own fallback when the app system token cannot be read: the older docs' minimum TTL.
SYSTEM_TOKEN_FALLBACK_TTL = 55 * 60
# System tokens live about an hour (at least 55 min) and the hourly trigger brings the next one
# before it lapses; the expiry a token claims is read unverified, so none is kept longer than
# this (a genuine token loses nothing, a junk one cannot be pinned for long).
SYSTEM_TOKEN_MAX_TTL = 2 * 3600

# Stable refusal codes (the ``error`` field of the 401 body).
MISSING_TOKEN = "missing_token"  # noqa: S105 (an error code)
MALFORMED_TOKEN = "malformed_token"  # noqa: S105
UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
MISSING_KID = "missing_kid"
UNKNOWN_KID = "unknown_kid"
BAD_SIGNATURE = "bad_signature"
WRONG_ISSUER = "wrong_issuer"
WRONG_AUDIENCE = "wrong_audience"
MISSING_CLAIM = "missing_claim"
EXPIRED = "token_expired"
NOT_YET_VALID = "token_not_yet_valid"
ISOLATED_CLOUD = "isolated_cloud_refused"
INVALID_CLAIMS = "invalid_claims"
WRONG_MODULE = "wrong_module"


class ForgeTokenError(VerificationError):
    """A Forge Invocation Token was refused; ``code`` says why."""


def check_module(
    invocation: Invocation, route: str, route_modules: Mapping[str, frozenset[str]]
) -> None:
    """Refuse a token issued to one of ``route_modules``' modules when another ``route`` is
    called (a token captured from one delivery is good for its own endpoint only). A module
    key that none of them names is not checked."""
    module = invocation.module_key
    known = frozenset().union(*route_modules.values())
    if module in known and module not in route_modules[route]:
        raise ForgeTokenError(
            WRONG_MODULE, f"the token was issued to module {module!r}, not to the {route} route"
        )


@dataclass(frozen=True, slots=True)
class TokenHeader:
    """What the unverified token says about how to verify it."""

    kid: str
    ic_label: str | None


@dataclass(frozen=True, slots=True)
class Invocation:
    """The verified facts of one Forge invocation."""

    installation_id: str
    app_id: str
    api_base_url: str
    cloud_id: str
    environment_type: str | None
    environment_id: str | None
    app_version: str | None
    module_key: str | None
    license_active: bool | None
    ic_label: str | None
    expires_at: int
    claims: dict[str, Any]
    issued_at: int = 0  # the token's ``iat``: orders the invocations of an installation


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ForgeTokenError(MISSING_TOKEN, "expected Authorization: Bearer <Forge token>")
    return token


def inspect_token(token: str, allowed_ic_labels: Collection[str] = ()) -> TokenHeader:
    """Check the header (RS256, a ``kid``) and the ``icLabel`` policy before any key lookup.

    Refusing on unverified content is safe: it never grants anything.
    """
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise ForgeTokenError(MALFORMED_TOKEN, "the bearer token is not a JWT") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise ForgeTokenError(
            UNSUPPORTED_ALGORITHM, f"Forge tokens are signed with RS256, not {str(alg)[:20]!r}"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ForgeTokenError(MISSING_KID, "the token header names no signing key (kid)")
    label = claims.get("icLabel")
    if label is not None:
        if not isinstance(label, str) or not IC_LABEL_PATTERN.fullmatch(label):
            raise ForgeTokenError(ISOLATED_CLOUD, "the token's icLabel is not a valid label")
        if label not in allowed_ic_labels:
            raise ForgeTokenError(
                ISOLATED_CLOUD,
                f"Isolated Cloud tokens (icLabel {label!r}) are not accepted; "
                "allow the label in REACTOR_FORGE_ALLOW_IC_LABELS",
            )
    return TokenHeader(kid=kid, ic_label=label)


def verify_token(
    token: str,
    keys: Mapping[str, jwt.PyJWK],
    *,
    app_id: str,
    now: float,
    leeway: float = MAX_LEEWAY_SECONDS,
    allowed_ic_labels: Collection[str] = (),
) -> Invocation:
    """Verify ``token`` against ``keys`` (by ``kid``) and return the invocation it describes."""
    header = inspect_token(token, allowed_ic_labels)
    key = keys.get(header.kid)
    if key is None:
        raise ForgeTokenError(UNKNOWN_KID, "the token is signed by a key the Forge JWKS lacks")
    claims = _decode(token, key, app_id)
    _check_times(claims, now, min(max(leeway, 0.0), MAX_LEEWAY_SECONDS))
    return _invocation(claims, app_id, header.ic_label)


def _decode(token: str, key: jwt.PyJWK, app_id: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[ALGORITHM],
            audience=app_id,
            issuer=ISSUER,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": ["exp", "nbf", "iat", "iss", "aud"],
            },
        )
    except jwt.InvalidAlgorithmError:
        raise ForgeTokenError(UNSUPPORTED_ALGORITHM, "Forge tokens are signed with RS256") from None
    except jwt.InvalidSignatureError:
        raise ForgeTokenError(BAD_SIGNATURE, "the token signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise ForgeTokenError(MISSING_CLAIM, f"the token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidIssuerError:
        raise ForgeTokenError(WRONG_ISSUER, f"the token issuer is not {ISSUER!r}") from None
    except jwt.InvalidAudienceError:
        raise ForgeTokenError(WRONG_AUDIENCE, "the token is meant for another app") from None
    except jwt.PyJWTError:
        raise ForgeTokenError(BAD_SIGNATURE, "the token does not verify with its key") from None
    return claims


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
    for name, value in times.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ForgeTokenError(INVALID_CLAIMS, f"the {name!r} claim is not a number")
        if not math.isfinite(value):  # json reads NaN and Infinity
            raise ForgeTokenError(INVALID_CLAIMS, f"the {name!r} claim is not a finite number")
    if now > float(times["exp"]) + leeway:  # type: ignore[arg-type]
        raise ForgeTokenError(EXPIRED, "the token has expired")
    if float(times["nbf"]) - leeway > now or float(times["iat"]) - leeway > now:  # type: ignore[arg-type]
        raise ForgeTokenError(NOT_YET_VALID, "the token is not valid yet")


def _invocation(claims: dict[str, Any], app_id: str, ic_label: str | None) -> Invocation:
    app = _dict(claims.get("app"))
    if app.get("id", app_id) != app_id:
        raise ForgeTokenError(WRONG_AUDIENCE, "the token's app.id is not this app")
    installation_id = app.get("installationId")
    api_base_url = app.get("apiBaseUrl")
    if not isinstance(installation_id, str) or not installation_id:
        raise ForgeTokenError(INVALID_CLAIMS, "the token names no app.installationId")
    if not isinstance(api_base_url, str) or urlsplit(api_base_url).scheme != "https":
        raise ForgeTokenError(INVALID_CLAIMS, "the token names no https app.apiBaseUrl")
    cloud_id = _cloud_id(app, api_base_url)
    if cloud_id is None:
        raise ForgeTokenError(INVALID_CLAIMS, "the token names no site (cloudId)")
    environment = _dict(app.get("environment"))
    license_ = _dict(app.get("license"))
    active = license_.get("active", license_.get("isActive"))
    return Invocation(
        installation_id=installation_ari(installation_id),
        app_id=app_id,
        api_base_url=api_base_url.rstrip("/"),
        cloud_id=cloud_id,
        environment_type=_str(environment.get("type")),
        environment_id=_str(environment.get("id")),
        app_version=_str(app.get("appVersion")) or _str(app.get("version")),
        module_key=_str(_dict(app.get("module")).get("key")),
        license_active=active if isinstance(active, bool) else None,
        ic_label=ic_label,
        expires_at=int(claims["exp"]),
        claims=claims,
        issued_at=int(claims["iat"]),
    )


def _cloud_id(app: Mapping[str, Any], api_base_url: str) -> str | None:
    contexts = _dict(app.get("installation")).get("contexts")
    for context in contexts if isinstance(contexts, list) else []:
        cloud_id = _str(_dict(context).get("cloudId"))
        if cloud_id:
            return cloud_id
    # https://api.atlassian.com/ex/confluence/<cloudId>
    parts = [p for p in urlsplit(api_base_url).path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "ex":
        return parts[2]
    return None


def installation_ari(value: str) -> str:
    """The installation id as an ARI (lifecycle payloads carry the bare UUID, FITs the ARI)."""
    value = value.strip()
    return value if value.startswith("ari:") else f"{INSTALLATION_ARI_PREFIX}{value}"


def system_token_expiry(token: str, now: float) -> int:
    """When the app system token (``x-forge-oauth-system``) expires, from its own ``exp``.

    Atlassian calls the token opaque but documents it as a JWT whose ``exp`` may be read
    without verification. An unreadable token gets the conservative fallback lifetime. As the
    claim is not verified, it is bounded: never more than :data:`SYSTEM_TOKEN_MAX_TTL` from
    ``now``.
    """
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        exp = None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp):
        # it sets how long the token is kept in Redis (and used) unless a newer one comes
        return min(int(exp), int(now) + SYSTEM_TOKEN_MAX_TTL)
    return int(now) + SYSTEM_TOKEN_FALLBACK_TTL


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
