"""Canonical requests: Atlassian's unit vectors and hypothesis properties of canonicalisation."""

from __future__ import annotations

import hashlib
import random
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.atlassian.qsh import (
    canonical_path,
    canonical_query,
    canonical_request,
    canonical_request_for_url,
    query_string_hash,
)

# Unit vectors of Atlassian's atlassian-jwt libraries (JavaScript test/jwt_test.ts and Java
# TestHttpRequestCanonicalizer), as listed in the project's Connect reference notes.
JS_VECTORS = [
    ("GET", "/path", None, "799be84a7fa35570087163c0cd9af3abff7ac05c2c12ba0bb1d7eebc984b3ac2"),
    ("GET", "", None, "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239"),
    ("GET", "/", None, "c88caad15a1c1a900b8ac08aa9686f4e8184539bea1deda36e2f649430df3239"),
    (
        "GET",
        "/hello-world?lic=none&tz=Australia%2FSydney&cp=%2Fjira&user_key=&loc=en-US&user_id="
        "&jwt=abc.def.ghi&xdm_e=http%3A%2F%2Fstorm%3A2990&xdm_c=channel-servlet-hello-world&xdm_p=1",
        None,
        "8063ff4ca1e41df7bc90c8ab6d0f6207d491cf6dad7c66ea797b4614b71922e9",
    ),
]

CANONICAL_VECTORS = [
    (
        "get",
        "/path/to/service?zee_last=param&repeated=parameter 1&first=param"
        "&repeated=parameter 2&repeated=Parameter 2",
        None,
        "GET&/path/to/service&first=param&repeated=Parameter%202,parameter%201,parameter%202"
        "&zee_last=param",
    ),
    ("GET", "/base/path/to/service", "https://bitbucket.org/base", "GET&/path/to/service&"),
    ("GET", "/hello-world?a&b=foo&c", None, "GET&/hello-world&a=&b=foo&c="),
    ("POST", "/rest/api/2/project&a=b&c=d?x=y", None, "POST&/rest/api/2/project%26a=b%26c=d&x=y"),
    (
        "GET",
        "/jira/rest/api/2/project/jira?x=y",
        "https://example.com/jira",
        "GET&/rest/api/2/project/jira&x=y",
    ),
    ("PUT", "/simple?foo=bah", None, "PUT&/simple&foo=bah"),
    ("POST", "/simple?foo=humbug&foo=bah", None, "POST&/simple&foo=bah,humbug"),
    ("GET", "/some/path&a=b", None, "GET&/some/path%26a=b&"),
    # the tenant's context path is not part of an outgoing request's canonical path
    (
        "GET",
        "https://x.atlassian.net/wiki/rest/api/content/123?expand=body.storage",
        "https://x.atlassian.net/wiki",
        "GET&/rest/api/content/123&expand=body.storage",
    ),
    ("GET", "/wikipedia/x", "https://x.atlassian.net/wiki", "GET&/wikipedia/x&"),
    # a request target starting with // is a path, not a host
    ("POST", "//evil.test/hook?a=1#frag", None, "POST&//evil.test/hook&a=1"),
]


@pytest.mark.parametrize(("method", "url", "base", "qsh"), JS_VECTORS)
def test_js_library_hashes(method: str, url: str, base: str | None, qsh: str) -> None:
    assert query_string_hash(method, url, base) == qsh


@pytest.mark.parametrize(("method", "url", "base", "canonical"), CANONICAL_VECTORS)
def test_reference_canonical_requests(
    method: str, url: str, base: str | None, canonical: str
) -> None:
    assert canonical_request_for_url(method, url, base) == canonical


def test_mapping_and_string_forms_agree() -> None:
    assert canonical_query({"b": ["2", "1"], "a": [""], "jwt": ["x"]}) == "a=&b=1,2"
    assert canonical_request("post", "x/", "b=2&b=1&a") == "POST&/x&a=&b=1,2"


def test_values_sort_as_java_does_outside_the_basic_plane() -> None:
    # U+1F600 is a surrogate pair in UTF-16 (0xD83D...), which sorts before U+FF5E in Java and
    # JavaScript, although its code point is larger.
    assert canonical_query({"k": ["\uff5e", "\U0001f600"]}).startswith("k=%F0%9F%98%80,")


def reference_encode(text: str) -> str:
    """RFC 3986 unreserved stay, everything else is %XX of UTF-8 bytes (upper-case hex)."""
    keep = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
names = text.filter(lambda n: n != "jwt")
pairs = st.lists(st.tuples(names, text), max_size=8)


def expected_query(items: list[tuple[str, str]]) -> str:
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        grouped.setdefault(name, []).append(value)
    entries = []
    for name, values in grouped.items():
        ordered = sorted(values, key=lambda v: v.encode("utf-16-be"))
        joined = ",".join(reference_encode(v) for v in ordered)
        entries.append(
            (reference_encode(name) + " " + joined, reference_encode(name) + "=" + joined)
        )
    return "&".join(e for _, e in sorted(entries))


@given(pairs)
def test_encoded_query_canonicalises_like_the_reference(items: list[tuple[str, str]]) -> None:
    items = [(n, v) for n, v in items if n]
    assert canonical_query(urlencode(items)) == expected_query(items)


@given(pairs, st.randoms())
def test_parameter_order_does_not_matter(items: list[tuple[str, str]], rnd: random.Random) -> None:
    items = [(n, v) for n, v in items if n]
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert canonical_query(urlencode(items)) == canonical_query(urlencode(shuffled))


@given(pairs)
def test_percent_and_plus_spaces_are_the_same_query(items: list[tuple[str, str]]) -> None:
    items = [(n, v) for n, v in items if n]
    with_plus = urlencode(items)
    with_percent = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in items)
    assert canonical_query(with_plus) == canonical_query(with_percent)


@given(pairs, text)
def test_jwt_parameter_never_counts(items: list[tuple[str, str]], token: str) -> None:
    items = [(n, v) for n, v in items if n]
    assert canonical_query(urlencode([*items, ("jwt", token)])) == canonical_query(urlencode(items))


@given(names.filter(bool), st.lists(text, min_size=2, max_size=5))
def test_repeated_names_become_one_sorted_entry(name: str, values: list[str]) -> None:
    out = canonical_query(urlencode([(name, v) for v in values]))
    assert out.count("&") == 0
    encoded_name, _, joined = out.partition("=")
    assert encoded_name == reference_encode(name)
    ordered = sorted(values, key=lambda v: v.encode("utf-16-be"))
    assert joined == ",".join(reference_encode(v) for v in ordered)


@given(st.text(alphabet="abc/&-._~!$'()*+,;=:@", max_size=20))
def test_path_rules(path: str) -> None:
    out = canonical_path(path)
    assert out.startswith("/")
    assert "&" not in out
    assert out.replace("%26", "&").lstrip("/") in (path.lstrip("/"), path.lstrip("/")[:-1])
    if path and not path.endswith("/"):
        assert canonical_path(path + "/") == out
        if not path.startswith("/"):
            assert canonical_path("/" + path) == out


@given(st.sampled_from(["get", "Get", "GET"]), st.text(alphabet="abc/", max_size=10))
def test_method_case_does_not_matter(method: str, path: str) -> None:
    assert canonical_request(method, path, "") == canonical_request("GET", path, "")


def test_hash_is_hex_sha256_of_the_canonical_request() -> None:
    canonical = canonical_request_for_url("POST", "/connect/installed")
    assert canonical == "POST&/connect/installed&"
    assert (
        query_string_hash("POST", "/connect/installed")
        == hashlib.sha256(canonical.encode()).hexdigest()
    )
