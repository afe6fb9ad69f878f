"""Connect JWTs: HS256 tokens bound to one request by their ``qsh`` claim. Pure, no I/O.

* :func:`encode_connect_token` signs an outgoing call (app -> Confluence) or, in tests and the
  simulator, an incoming one (Confluence -> app).
* :func:`verify_connect_token` checks an incoming token against the request it arrived on.
  Steps, in order: size, shape, ``alg`` (HS256 only), issuer -> tenant secret, signature,
  required claims and their types, time window (``exp``, ``iat``, ``nbf`` with leeway),
  audience, ``qsh``. Every failure raises a :class:`TokenRejected` subclass whose ``code`` is
  stable; texts never contain the token or a secret.
* :func:`build_user_assertion` makes the JWT-bearer assertion of the act-as-user grant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import orjson

from app.atlassian.qsh import CONTEXT_QSH, query_string_hash
from app.atlassian.token_errors import (
    BadSignature,
    ContextQshNotAllowed,
    DisabledTenant,
    InvalidClaims,
    MalformedToken,
    MissingToken,
    QshMismatch,
    TokenExpired,
    TokenNotYetValid,
    TokenRejected,
    TokenTooLarge,
    UninstalledTenant,
    UnknownTenant,
    WrongAlgorithm,
)

MAX_TOKEN_BYTES = 8 * 1024
USER_ASSERTION_AUDIENCE = "https://oauth-2-authorization-server.services.atlassian.com"


# Named tuples rather than frozen dataclasses: as immutable, and made once per webhook, where
# a frozen dataclass's field-by-field ``object.__setattr__`` costs several times more.
class ParsedToken(NamedTuple):
    """A compact JWS split into its parts; nothing about it is verified yet."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


class ConnectClaims(NamedTuple):
    """The verified claims of a Connect token."""

    issuer: str
    issued_at: int
    expires_at: int
    qsh: str
    subject: str | None = None
    context: Mapping[str, Any] = _NO_CLAIMS
    raw: Mapping[str, Any] = _NO_CLAIMS


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# A bytes table: bytes.translate is a plain table lookup, several times faster than
# str.translate with a mapping (a few microseconds per token segment on the ingest path).
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def _b64url_decode(part: str) -> bytes:
    # Unpadded base64url only: no '+', '/' or '=' of its own; the strict decoder refuses any
    # other character outside the alphabet, and impossible lengths. Callers pass ASCII only.
    if not part or "+" in part or "/" in part or "=" in part:
        raise MalformedToken("token segment is not base64url")
    try:
        return binascii.a2b_base64(
            part.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(part) % 4),
            strict_mode=True,
        )
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken("token segment is not base64url") from exc


@lru_cache(maxsize=1024)
def _hs256_key(secret: str) -> Any:
    # HMAC-SHA256 keyed with ``secret``, copied per token: the key set-up is paid once.
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def _hs256(secret: str, signing_input: bytes) -> bytes:
    mac = _hs256_key(secret).copy()
    mac.update(signing_input)
    digest: bytes = mac.digest()
    return digest


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedToken(f"token {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedToken(f"token {what} is not a JSON object")
    return value


@lru_cache(maxsize=256)
def _header(segment: str) -> dict[str, Any]:
    # A signer's header segment is the same on every token it makes: decode it once.
    return _json_object(_b64url_decode(segment), "header")


def parse_token(token: str) -> ParsedToken:
    """Split and decode a compact JWS without verifying it (size and shape checks only)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenTooLarge(f"token longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():
        raise MalformedToken("token is not a compact JWS of three parts")
    header = dict(_header(parts[0]))
    claims = _json_object(_b64url_decode(parts[1]), "payload")
    signature = _b64url_decode(parts[2]) if parts[2] else b""
    return ParsedToken(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def read_unverified_issuer(token: str | ParsedToken) -> str:
    """The ``iss`` claim (the tenant's clientKey), read before verification to find the secret."""
    parsed = token if isinstance(token, ParsedToken) else parse_token(token)
    issuer = parsed.claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidClaims("claim iss is missing or not a string")
    return issuer


def extract_token(authorization: str | None, query_string: str) -> str:
    """The token from ``Authorization: JWT <token>`` or else from the ``jwt`` query parameter."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "jwt" or not value.strip():
            raise MissingToken("Authorization header is not of the form 'JWT <token>'")
        return value.strip()
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name == "jwt" and value:
            return value
    raise MissingToken("no JWT in the Authorization header or the jwt query parameter")


def sign_hs256(claims: Mapping[str, Any], secret: str) -> str:
    header = b64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode("utf-8"))
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url_encode(signature)}"


def encode_connect_token(
    *,
    issuer: str,
    secret: str,
    method: str,
    url: str,
    base_url: str | None = None,
    now: int | None = None,
    lifetime: int = 180,
    subject: str | None = None,
) -> str:
    """An HS256 Connect token for ``method`` on ``url`` (qsh path relative to ``base_url``)."""
    issued_at = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "qsh": query_string_hash(method, url, base_url),
    }
    if subject is not None:
        claims["sub"] = subject
    return sign_hs256(claims, secret)


def _numeric(claims: Mapping[str, Any], name: str, *, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClaims(f"claim {name} is missing or not a number")
    return int(value)


def check_times(claims: Mapping[str, Any], *, now: int, leeway: int) -> tuple[int, int]:
    """Require ``iat`` and ``exp``; enforce them and an optional ``nbf`` with ``leeway``."""
    issued_at = _numeric(claims, "iat", required=True)
    expires_at = _numeric(claims, "exp", required=True)
    not_before = _numeric(claims, "nbf", required=False)
    assert issued_at is not None and expires_at is not None
    if expires_at < issued_at:
        raise InvalidClaims("claim exp is before iat")
    if now >= expires_at + leeway:
        raise TokenExpired(f"token expired {now - expires_at} s ago")
    if issued_at > now + leeway:
        raise TokenNotYetValid(f"token issued {issued_at - now} s in the future")
    if not_before is not None and not_before > now + leeway:
        raise TokenNotYetValid(f"token not valid for another {not_before - now} s")
    return issued_at, expires_at


def audiences(claims: Mapping[str, Any]) -> list[str] | None:
    """The ``aud`` claim as a list, ``None`` when absent."""
    aud = claims.get("aud")
    if aud is None:
        return None
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    raise InvalidClaims("claim aud is not a string or a list of strings")


def verify_connect_token(
    token: str | ParsedToken,
    *,
    secret_for: Callable[[str], str | None],
    method: str,
    url: str,
    base_url: str | None = None,
    now: int | None = None,
    leeway: int = 30,
    allow_context_qsh: bool = False,
) -> ConnectClaims:
    """Verify an incoming HS256 Connect token for ``method`` on ``url``.

    ``secret_for(issuer)`` returns the tenant's shared secret, ``None`` for an unknown tenant,
    or raises a :class:`TokenRejected` (for instance :class:`UninstalledTenant`). ``url`` is
    the raw path and query as received; its path is taken relative to ``base_url``'s path.
    ``token`` may be passed already parsed (by :func:`parse_token`) to avoid decoding twice.
    """
    parsed = token if isinstance(token, ParsedToken) else parse_token(token)
    alg = parsed.header.get("alg")
    if alg != "HS256":
        raise WrongAlgorithm(f"algorithm {str(alg)[:20]!r} is not accepted here; HS256 only")
    issuer = parsed.claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidClaims("claim iss is missing or not a string")
    secret = secret_for(issuer)
    if secret is None:
        raise UnknownTenant("no installed tenant with this clientKey", tenant=issuer)
    expected = _hs256(secret, parsed.signing_input)
    if not hmac.compare_digest(expected, parsed.signature):
        raise BadSignature("signature does not match the tenant's shared secret", tenant=issuer)
    claims = parsed.claims
    try:
        issued_at, expires_at = check_times(
            claims, now=int(time.time()) if now is None else now, leeway=leeway
        )
        aud = audiences(claims)
        if aud is not None and issuer not in aud:
            raise InvalidClaims("claim aud names another party")
        qsh = claims.get("qsh")
        if not isinstance(qsh, str) or not qsh:
            raise InvalidClaims("claim qsh is missing or not a string")
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise InvalidClaims("claim sub is not a string")
        context = claims.get("context", {})
        if not isinstance(context, dict):
            raise InvalidClaims("claim context is not an object")
        check_qsh(qsh, method=method, url=url, base_url=base_url, allow_context=allow_context_qsh)
    except TokenRejected as exc:
        exc.tenant = issuer
        raise
    return ConnectClaims(issuer, issued_at, expires_at, qsh, subject, context, claims)


def check_qsh(
    qsh: str, *, method: str, url: str, base_url: str | None, allow_context: bool
) -> None:
    """Compare a ``qsh`` claim with the hash of the request it arrived on."""
    if qsh == CONTEXT_QSH:
        if not allow_context:
            raise ContextQshNotAllowed("context tokens are not accepted on this endpoint")
        return
    if not hmac.compare_digest(
        qsh.encode("utf-8"), query_string_hash(method, url, base_url).encode()
    ):
        raise QshMismatch("qsh does not match this request's method, path and query")


def build_user_assertion(
    *,
    oauth_client_id: str,
    secret: str,
    account_id: str,
    tenant_base_url: str,
    now: int | None = None,
    lifetime: int = 60,
) -> str:
    """The JWT-bearer assertion exchanged for a token acting as ``account_id`` (HS256)."""
    issued_at = int(time.time()) if now is None else now
    claims = {
        "iss": f"urn:atlassian:connect:clientid:{oauth_client_id}",
        "sub": f"urn:atlassian:connect:useraccountid:{account_id}",
        "tnt": tenant_base_url,
        "aud": USER_ASSERTION_AUDIENCE,
        "iat": issued_at,
        "exp": issued_at + lifetime,
    }
    return sign_hs256(claims, secret)


__all__ = [
    "MAX_TOKEN_BYTES",
    "USER_ASSERTION_AUDIENCE",
    "BadSignature",
    "ConnectClaims",
    "ContextQshNotAllowed",
    "DisabledTenant",
    "InvalidClaims",
    "MalformedToken",
    "MissingToken",
    "ParsedToken",
    "QshMismatch",
    "TokenExpired",
    "TokenNotYetValid",
    "TokenRejected",
    "TokenTooLarge",
    "UninstalledTenant",
    "UnknownTenant",
    "WrongAlgorithm",
    "audiences",
    "b64url_encode",
    "build_user_assertion",
    "check_qsh",
    "check_times",
    "encode_connect_token",
    "extract_token",
    "parse_token",
    "read_unverified_issuer",
    "sign_hs256",
    "verify_connect_token",
]
