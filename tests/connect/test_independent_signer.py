"""A webhook signed by a second, deliberately independent implementation of Atlassian's
algorithm (written here from the published description with hmac, hashlib and base64 only,
sharing no code with ``app.atlassian``) is accepted; any change of method, path, query,
secret or tenant is refused with the matching reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.atlassian.qsh import canonical_request_for_url

from .conftest import ConnectApp
from .test_webhooks import page_created

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def enc(text: str) -> str:
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in text.encode())


def their_canonical(method: str, path_and_query: str) -> str:
    path, _, query = path_and_query.partition("?")
    path = path.replace("&", "%26") or "/"
    if len(path) > 1 and path[-1] == "/":
        path = path[:-1]
    params: dict[str, list[str]] = {}
    for piece in query.split("&") if query else []:
        name, _, value = piece.partition("=")
        name, value = unquote_plus(name), unquote_plus(value)
        if name != "jwt":
            params.setdefault(name, []).append(value)
    pieces = sorted(
        (enc(name), ",".join(enc(v) for v in sorted(values))) for name, values in params.items()
    )
    return f"{method.upper()}&{path}&" + "&".join(f"{n}={v}" for n, v in pieces)


def their_token(issuer: str, secret: str, method: str, path_and_query: str) -> str:
    def part(obj: object) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    now = int(time.time())
    qsh = hashlib.sha256(their_canonical(method, path_and_query).encode()).hexdigest()
    signing_input = (
        part({"typ": "JWT", "alg": "HS256"})
        + "."
        + part({"qsh": qsh, "iss": issuer, "iat": now, "exp": now + 180, "context": {}})
    )
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


SIGNED = "/connect/webhooks/page_created?user_id=admin&lic=none&tz=Europe%2FParis&a=2&a=1"


async def send(app: ConnectApp, method: str, url: str, token: str) -> httpx.Response:
    return await app.client.request(
        method, url, json=page_created(), headers={"Authorization": f"JWT {token}"}
    )


def test_their_canonical_form_matches_the_reference_example() -> None:
    assert their_canonical("post", SIGNED) == (
        "POST&/connect/webhooks/page_created&a=1,2&lic=none&tz=Europe%2FParis&user_id=admin"
    )


async def test_accepted_as_signed(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    resp = await send(connect_app, "POST", SIGNED, their_token(client_key, secret, "POST", SIGNED))
    assert resp.status_code == 204, resp.text


@pytest.mark.parametrize(
    ("method", "url", "code"),
    [
        ("PUT", SIGNED, "qsh_mismatch"),
        ("POST", SIGNED.replace("page_created", "page_updated"), "qsh_mismatch"),
        ("POST", SIGNED.replace("page_created", "page%5Fcreated"), "qsh_mismatch"),
        ("POST", SIGNED.replace("lic=none", "lic=full"), "qsh_mismatch"),
        ("POST", SIGNED + "&extra=1", "qsh_mismatch"),
        ("POST", SIGNED.split("&", 1)[0], "qsh_mismatch"),
    ],
)
async def test_any_change_of_the_request_is_refused(
    connect_app: ConnectApp, method: str, url: str, code: str
) -> None:
    client_key, secret = await connect_app.install()
    token = their_token(client_key, secret, "POST", SIGNED)
    resp = await send(connect_app, method, url, token)
    assert (resp.status_code, resp.json()["error"]) == (401, code)


async def test_reordered_query_is_the_same_request(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    token = their_token(client_key, secret, "POST", SIGNED)
    path, query = SIGNED.split("?")
    reordered = path + "?" + "&".join(reversed(query.split("&")))
    assert (await send(connect_app, "POST", reordered, token)).status_code == 204


async def test_wrong_secret_or_tenant_is_refused(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    other_key, other_secret = await connect_app.install()
    cases = [
        (their_token(client_key, secret + "x", "POST", SIGNED), "bad_signature"),
        (their_token(client_key, other_secret, "POST", SIGNED), "bad_signature"),
        (their_token(other_key, secret, "POST", SIGNED), "bad_signature"),
        (their_token("never-installed", secret, "POST", SIGNED), "unknown_tenant"),
    ]
    for token, code in cases:
        resp = await send(connect_app, "POST", SIGNED, token)
        assert (resp.status_code, resp.json()["error"]) == (401, code)


@given(
    method=st.sampled_from(["get", "POST", "Put"]),
    path=st.text(alphabet="abcXYZ019-._~/", min_size=1, max_size=20).map(lambda p: "/" + p),
    pairs=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8).filter(lambda n: n != "jwt"),
            st.text(max_size=8),
        ),
        max_size=6,
    ),
)
def test_both_implementations_agree(method: str, path: str, pairs: list[tuple[str, str]]) -> None:
    # code-point order equals Java's UTF-16 order inside the Basic Multilingual Plane
    assume(all(ord(c) < 0xD800 for n, v in pairs for c in n + v))
    url = f"{path}?{urlencode(pairs)}" if pairs else path
    assert canonical_request_for_url(method, url) == their_canonical(method, url)
