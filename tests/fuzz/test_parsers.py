"""The token parsers and payload readers take any input and either answer or refuse with one
of our own errors (``ReactorError``): never another exception, never a secret in the message.

Pure functions, so thousands of cases run in seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.atlassian import connect_jwt, events, forge_token, install_token, qsh
from app.errors import ReactorError
from tests.fuzz.strategies import JSON, OBJECT, PAYLOADS, TOKEN_TEXT, hs256_token, mutate

SECRET = "fuzz-shared-secret-0123456789abcdef"
EXAMPLES = 400
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUNS = {"count": 0}
CONNECT_NAMES = ["page_updated", "page_created", "comment_created", "label_added", "blog_updated"]


def refuse_cleanly(call: Any, *args: Any, **kwargs: Any) -> None:
    RUNS["count"] += 1
    try:
        call(*args, **kwargs)
    except ReactorError as exc:
        assert SECRET not in str(exc)


@FAST
@given(
    token=st.one_of(TOKEN_TEXT, hs256_token(SECRET)),
    method=st.sampled_from(["POST", "GET", ""]),
    url=st.text(max_size=40),
)
def test_connect_tokens(token: str, method: str, url: str) -> None:
    refuse_cleanly(connect_jwt.parse_token, token)
    refuse_cleanly(connect_jwt.read_unverified_issuer, token)
    refuse_cleanly(
        connect_jwt.verify_connect_token,
        token,
        secret_for=lambda _issuer: SECRET,
        method=method,
        url="/" + url,
        base_url="https://reactor.test",
    )


@FAST
@given(
    authorization=st.one_of(st.none(), st.text(max_size=40), TOKEN_TEXT.map(lambda t: "JWT " + t)),
    query=st.text(max_size=40),
)
def test_token_extraction_and_qsh(authorization: str | None, query: str) -> None:
    refuse_cleanly(connect_jwt.extract_token, authorization, query)
    refuse_cleanly(qsh.query_string_hash, "POST", "/x?" + query, "https://reactor.test/base")
    refuse_cleanly(forge_token.bearer_token, authorization)


@FAST
@given(token=TOKEN_TEXT)
def test_forge_and_install_tokens(token: str) -> None:
    refuse_cleanly(forge_token.inspect_token, token, ("ic-1",))
    refuse_cleanly(forge_token.verify_token, token, {}, app_id="ari:app", now=0.0)
    refuse_cleanly(forge_token.system_token_expiry, token, 0.0)
    refuse_cleanly(install_token.read_install_key_id, token)


@FAST
@given(
    body=st.one_of(
        JSON,
        OBJECT,
        st.dictionaries(
            st.sampled_from(["page", "blog", "comment", "label", "attachedTo", "content", "event"]),
            OBJECT,
            max_size=3,
        ),
    ),
    name=st.sampled_from(
        [
            "page_updated",
            "comment_created",
            "label_added",
            "attachment_created",
            "blog_created",
            "nope",
        ]
    ),
)
def test_payload_readers(body: Any, name: str) -> None:
    refuse_cleanly(events.from_connect, "site", name, body)
    refuse_cleanly(events.from_forge, "site", body)
    refuse_cleanly(install_token.parse_lifecycle_payload, body, require_secret=True)


@FAST
@given(data=st.data(), payload=st.sampled_from(PAYLOADS), name=st.sampled_from(CONNECT_NAMES))
def test_mutated_real_payloads(data: st.DataObject, payload: Any, name: str) -> None:
    body = data.draw(st.builds(mutate, st.just(payload), st.just(data.draw)))
    refuse_cleanly(events.from_connect, "site", name, body)
    refuse_cleanly(events.from_forge, "site", body)


def test_the_parsers_saw_thousands_of_inputs() -> None:
    if RUNS["count"] == 0:
        pytest.skip("run with the parser tests")
    assert RUNS["count"] >= 5 * EXAMPLES * 2
