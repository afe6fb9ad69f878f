"""Hypothesis strategies for hostile input: JSON, token-shaped strings, signed tokens, headers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from hypothesis import strategies as st

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

# Keys and values the parsers look for, so generated objects reach past the first check.
NAMES = st.sampled_from(
    [
        "iss",
        "sub",
        "aud",
        "iat",
        "exp",
        "nbf",
        "qsh",
        "context",
        "app",
        "kid",
        "alg",
        "typ",
        "page",
        "blog",
        "comment",
        "label",
        "labeled",
        "id",
        "version",
        "spaceKey",
        "eventType",
        "clientKey",
        "sharedSecret",
        "baseUrl",
        "installationId",
        "event",
        "payload",
        "content",
        "timestamp",
        "userAccountId",
        "principal",
        "apiBaseUrl",
        "installation",
        "icLabel",
    ]
)
VALUES = st.one_of(
    JSON,
    st.sampled_from(["RS256", "HS256", "none", "JWT", "forge/invocation-token", "page_updated"]),
    st.integers(min_value=0, max_value=2**40),
)
OBJECT: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.one_of(NAMES, st.text(max_size=8)),
    st.one_of(VALUES, st.dictionaries(NAMES, VALUES, max_size=5)),
    max_size=8,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def token_like(draw: st.DrawFn) -> str:
    """Three dot-separated parts, each JSON, base64 of random bytes, or arbitrary text."""
    part = st.one_of(
        OBJECT.map(lambda o: b64(json.dumps(o).encode())),
        st.binary(max_size=40).map(b64),
        st.text(max_size=30),
    )
    parts = draw(st.lists(part, min_size=1, max_size=5))
    return ".".join(parts)


@st.composite
def hs256_token(draw: st.DrawFn, secret: str) -> str:
    """A correctly signed HS256 token with hostile claims and headers."""
    claims = draw(OBJECT)
    headers = draw(st.dictionaries(NAMES, VALUES, max_size=3))
    try:
        return jwt.encode(claims, secret, algorithm="HS256", headers=headers)
    except Exception:
        return draw(token_like())


TOKEN_TEXT = st.one_of(token_like(), st.text(max_size=60), st.binary(max_size=60).map(b64))


# Real payloads (Connect and Forge, every handled event) from tests/fixtures/events.
PAYLOADS = [
    json.loads(p.read_text())
    for p in sorted((Path(__file__).parents[1] / "fixtures" / "events").rglob("*.json"))
]

# Scalars the payload readers convert: ids, versions, timestamps, as the wrong kind of value.
ODD_SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "1.5", "-1", "1e3", "\uff10\uff11", "99999999999999999999999", " 7"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.none(),
)


def leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, (*path, k))] or [path]
    return [path]


def replaced(value: Any, path: tuple[str, ...], new: Any) -> Any:
    if not path:
        return new
    return {**value, path[0]: replaced(value[path[0]], path[1:], new)}


def mutate(payload: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """A real payload with one field, at any depth, replaced by an odd scalar or random JSON."""
    path: tuple[str, ...] = draw(st.sampled_from(leaves(payload)))
    if path and draw(st.booleans()):
        path = path[: draw(st.integers(1, len(path)))]  # sometimes a whole object
    return replaced(payload, path, draw(st.one_of(ODD_SCALARS, ODD_SCALARS, JSON)))
