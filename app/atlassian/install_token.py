"""Signed installs: the RS256 tokens on Connect ``installed``/``uninstalled`` calls. Pure, no I/O.

Atlassian signs lifecycle calls with a private key whose public half is published at
``<install keys URL>/<kid>``. The caller reads the ``kid`` with :func:`read_install_key_id`
(which refuses any value that could change the key URL), fetches the PEM, and passes it to
:func:`verify_install_token`, which checks the RS256 signature, the time window, ``aud`` (our
base URL), ``iss`` (the body's clientKey) and ``qsh`` (this request; ``context-qsh`` refused).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.atlassian.connect_jwt import (
    BadSignature,
    ConnectClaims,
    InvalidClaims,
    TokenRejected,
    WrongAlgorithm,
    audiences,
    check_qsh,
    check_times,
    parse_token,
)
from app.errors import MalformedRequest

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_AUDIENCE_SHOWN = 200  # characters of each received ``aud`` kept for the log


class BadKeyId(TokenRejected):
    code_name = "bad_key_id"


class WrongAudience(TokenRejected):
    """``aud`` is not our base URL. ``received`` holds what the token named (not secret: a URL,
    shortened), so a log line can show it next to ``REACTOR_BASE_URL``."""

    code_name = "wrong_audience"

    def __init__(
        self, detail: str, *, tenant: str | None = None, received: list[str] | None = None
    ) -> None:
        super().__init__(detail, tenant=tenant)
        self.received = [a[:MAX_AUDIENCE_SHOWN] for a in (received or [])[:3]]


class IssuerMismatch(TokenRejected):
    code_name = "issuer_mismatch"


class TokenReused(TokenRejected):
    """A signed lifecycle token seen before with another body (a captured token replayed)."""

    code_name = "token_reused"


def is_safe_key_id(kid: object) -> bool:
    """True for ids made only of letters, digits, ``-`` and ``_`` (at most 128 of them)."""
    return isinstance(kid, str) and KEY_ID_PATTERN.fullmatch(kid) is not None


def read_install_key_id(token: str) -> str:
    """The ``kid`` of a signed-install token, after checking ``alg`` is RS256 and ``kid`` safe."""
    header = parse_token(token).header
    alg = header.get("alg")
    if alg != "RS256":
        raise WrongAlgorithm(f"algorithm {str(alg)[:20]!r} is not accepted here; RS256 only")
    kid = header.get("kid")
    if not is_safe_key_id(kid):
        raise BadKeyId("kid is missing or contains characters that are not allowed")
    assert isinstance(kid, str)
    return kid


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM text; ``ValueError`` for anything else."""
    raw = pem.encode("ascii") if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(raw)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def verify_install_token(
    token: str,
    *,
    public_key: rsa.RSAPublicKey,
    method: str,
    url: str,
    app_base_url: str,
    client_key: str,
    now: int | None = None,
    leeway: int = 30,
) -> ConnectClaims:
    """Verify a signed-install token for ``method`` on ``url`` from tenant ``client_key``.

    ``app_base_url`` is our own base URL: the required audience, and the prefix stripped from
    the request path before the ``qsh`` is computed.
    """
    read_install_key_id(token)
    parsed = parse_token(token)
    try:
        public_key.verify(
            parsed.signature, parsed.signing_input, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature("signature does not match the install key", tenant=client_key) from exc
    return check_install_claims(
        parsed.claims,
        method=method,
        url=url,
        app_base_url=app_base_url,
        client_key=client_key,
        now=now,
        leeway=leeway,
    )


def check_install_claims(
    claims: dict[str, Any],
    *,
    method: str,
    url: str,
    app_base_url: str,
    client_key: str,
    now: int | None = None,
    leeway: int = 30,
) -> ConnectClaims:
    """Time window, ``iss`` (the body's clientKey), ``aud`` (our base URL) and ``qsh``.

    Also run before the install key is fetched: that proves nothing (the claims are not
    verified yet), but a token that would fail them anyway costs no request to the key server.
    """
    try:
        issued_at, expires_at = check_times(
            claims, now=int(time.time()) if now is None else now, leeway=leeway
        )
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise InvalidClaims("claim iss is missing or not a string")
        if issuer != client_key:
            raise IssuerMismatch("claim iss is not the clientKey of the request body")
        aud = audiences(claims)
        if not aud or not any(_same_url(a, app_base_url) for a in aud):
            raise WrongAudience("claim aud is not this app's base URL", received=aud)
        qsh = claims.get("qsh")
        if not isinstance(qsh, str) or not qsh:
            raise InvalidClaims("claim qsh is missing or not a string")
        check_qsh(qsh, method=method, url=url, base_url=app_base_url, allow_context=False)
    except TokenRejected as exc:
        exc.tenant = client_key
        raise
    subject = claims.get("sub")
    context = claims.get("context")
    return ConnectClaims(
        issuer,
        issued_at,
        expires_at,
        qsh,
        subject if isinstance(subject, str) else None,
        context if isinstance(context, dict) else {},
        claims,
    )


@dataclass(frozen=True)
class LifecyclePayload:
    """The fields of a lifecycle body this app uses (``sharedSecret`` only on ``installed``)."""

    client_key: str
    base_url: str
    shared_secret: str | None = field(default=None, repr=False)
    key: str | None = None
    display_url: str | None = None
    product_type: str = "confluence"
    oauth_client_id: str | None = None
    installation_id: str | None = None
    event_type: str | None = None


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedRequest("invalid_lifecycle_payload", f"{name} must be a string")
    return value


def parse_lifecycle_payload(body: Any, *, require_secret: bool) -> LifecyclePayload:
    """Validate a lifecycle body: clientKey, an http(s) baseUrl and, if required, sharedSecret."""
    if not isinstance(body, dict):
        raise MalformedRequest("invalid_lifecycle_payload", "the body must be a JSON object")
    client_key = _optional_str(body, "clientKey")
    base_url = _optional_str(body, "baseUrl")
    secret = _optional_str(body, "sharedSecret")
    if client_key is None or len(client_key) > 256:
        raise MalformedRequest("invalid_lifecycle_payload", "clientKey is missing or too long")
    parts = urlsplit(base_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MalformedRequest("invalid_lifecycle_payload", "baseUrl must be an absolute URL")
    if require_secret and (secret is None or len(secret) < 16):
        raise MalformedRequest("invalid_lifecycle_payload", "sharedSecret is missing or short")
    assert base_url is not None
    return LifecyclePayload(
        client_key=client_key,
        base_url=base_url.rstrip("/"),
        shared_secret=secret,
        key=_optional_str(body, "key"),
        display_url=_optional_str(body, "displayUrl"),
        product_type=_optional_str(body, "productType") or "confluence",
        oauth_client_id=_optional_str(body, "oauthClientId"),
        installation_id=_optional_str(body, "installationId"),
        event_type=_optional_str(body, "eventType"),
    )
