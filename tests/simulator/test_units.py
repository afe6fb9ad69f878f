"""Pure pieces: cursor pagination, the clock, points arithmetic, body conversion and checks,
storage anchors, descriptors."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.bodies import parse_write_body, plain_text, render
from simulator.clock import Clock
from simulator.errors import ApiError
from simulator.install import InstallError, parse_descriptor
from simulator.pagination import decode_cursor, encode_cursor, paginate
from simulator.params import Query
from simulator.ratelimit import RateLimiter, cost
from simulator.storage import anchor_text, has_marker, insert_marker, well_formed_error


@dataclass
class Item:
    id: str
    rank: int


def _walk(items: list[Item], limit: int, descending: bool) -> list[str]:
    seen: list[str] = []
    query = Query([("limit", str(limit))])
    while True:
        page = paginate(
            items,
            query=query,
            path="/wiki/api/v2/x",
            order="rank",
            value=lambda i: i.rank,
            ident=lambda i: i.id,
            descending=descending,
        )
        seen += [i.id for i in page.items]
        if page.next_link is None:
            return seen
        cursor = page.next_link.split("cursor=")[1].split("&")[0]
        from urllib.parse import unquote

        query = Query([("limit", str(limit)), ("cursor", unquote(cursor))])


@given(
    ranks=st.lists(st.integers(0, 5), max_size=30),
    limit=st.integers(1, 7),
    descending=st.booleans(),
)
def test_paging_visits_every_item_once_in_order(
    ranks: list[int], limit: int, descending: bool
) -> None:
    items = [Item(str(100 + n), r) for n, r in enumerate(ranks)]
    seen = _walk(items, limit, descending)
    expected = sorted(items, key=lambda i: (i.rank, int(i.id)), reverse=descending)
    assert seen == [i.id for i in expected]


def test_cursor_round_trip_and_rejections() -> None:
    token = encode_cursor("42", "id", 42)
    assert decode_cursor(token, "id") == (42, 42)
    for bad in ("", "!!", encode_cursor("42", "title", "x")):
        with pytest.raises(ApiError) as info:
            decode_cursor(bad, "id")
        assert info.value.status == 400


def test_clock_scale_and_advance() -> None:
    now = [0.0]
    clock = Clock(start=1000.0, scale=10, monotonic=lambda: now[0])
    now[0] = 2.0
    assert clock.time() == pytest.approx(1020.0)
    clock.set_scale(1)
    now[0] = 3.0
    assert clock.time() == pytest.approx(1021.0)
    clock.advance(100)
    clock.advance(-50)  # never backwards
    assert clock.time() == pytest.approx(1121.0)
    assert Clock(start=0.0).iso().startswith("1970-01-01T00:00:00.")


def test_points_cost_and_hourly_window() -> None:
    assert cost("GET", 25) == 26 and cost("GET", 0) == 1 and cost("PUT", 5) == 1
    now = [0.0]
    limiter = RateLimiter(Clock(start=7200.0 + 3599, monotonic=lambda: now[0]), app_quota=2)
    limiter.charge("app", "site", 2)
    assert limiter.check_quota("app", "site") is not None
    now[0] = 1.0  # the top of the hour
    assert limiter.check_quota("app", "site") is None


def test_body_representations() -> None:
    assert parse_write_body({"representation": "storage", "value": "<p>x</p>"}, required=True) == (
        "storage",
        "<p>x</p>",
    )
    assert parse_write_body(
        {"storage": {"representation": "storage", "value": "v"}}, required=True
    ) == ("storage", "v")
    with pytest.raises(ApiError):
        parse_write_body({"representation": "atlas_doc_format", "value": "{"}, required=True)
    adf = render("storage", "<p>one &amp; two</p>", "atlas_doc_format")["value"]
    assert json.loads(adf)["content"][0]["content"][0]["text"] == "one & two"
    assert render("atlas_doc_format", adf, "storage")["value"] == "<p>one &amp; two</p>"
    assert plain_text("atlas_doc_format", adf) == "one & two"


def test_a_body_needs_a_value_and_wiki_is_refused() -> None:
    for body in (
        {"representation": "storage"},
        {"storage": {"representation": "storage"}},
        {"representation": "atlas_doc_format"},
        {"representation": "storage", "value": None},
    ):
        with pytest.raises(ApiError) as info:
            parse_write_body(body, required=True)
        assert info.value.status == 400, body
    assert parse_write_body({"representation": "storage", "value": ""}, required=True) == (
        "storage",
        "",
    )
    with pytest.raises(ApiError) as wiki:
        parse_write_body({"representation": "wiki", "value": "h1. Title"}, required=True)
    assert wiki.value.status == 400
    assert "wiki is not supported by the simulator" in wiki.value.title
    assert "send storage" in wiki.value.title


VALID_STORAGE = [
    "",
    "plain words, no markup",
    "<p>one</p><p>two</p>\n<h2>three</h2>",
    "<p>a&nbsp;b &mdash; c&rsquo;s &hellip; &euro;5 &copy; &lt;&amp;&gt;&quot;&apos;</p>",
    "<p>&#160;&#xA0;&#8212;</p>",
    '<p title="R&amp;D&nbsp;notes">x</p><br/><hr />',
    '<ac:structured-macro ac:name="code" ac:schema-version="1" ac:macro-id="m1">'
    '<ac:parameter ac:name="language">python</ac:parameter>'
    "<ac:plain-text-body><![CDATA[if a < b && c: print('<p>')]]></ac:plain-text-body>"
    "</ac:structured-macro>",
    '<p><ac:link><ri:page ri:content-title="Home" ri:space-key="DEV" />'
    "<ac:plain-text-link-body><![CDATA[Home & away]]></ac:plain-text-link-body></ac:link></p>",
    '<p><ac:link><ri:user ri:account-id="712020:abc" /></ac:link></p>',
    '<ac:image ac:height="250"><ri:attachment ri:filename="a.png" /></ac:image>',
    "<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>incomplete"
    "</ac:task-status><ac:task-body>Do it</ac:task-body></ac:task></ac:task-list>",
    '<p><ac:inline-comment-marker ac:ref="6a1c">marked</ac:inline-comment-marker></p>',
    '<p><at:var at:name="name" /></p><!-- a comment -->',
    "<table><tbody><tr><th>h</th></tr><tr><td><p>c</p></td></tr></tbody></table>",
]
MALFORMED_STORAGE = [
    "<p>x<b></p>",
    "<p>unclosed",
    "<p>line<br></p>",
    "<p>R&D</p>",
    "<p>&bogus;</p>",
    "<p>a < b</p>",
    "<p class=x>y</p>",
    "<o:p>Word paste</o:p>",
    "</p>",
    '<p title="a"title="b">x</p>',
]


@pytest.mark.parametrize("value", VALID_STORAGE)
def test_valid_storage_is_accepted(value: str) -> None:
    assert well_formed_error(value) is None
    assert parse_write_body({"representation": "storage", "value": value}, required=True) == (
        "storage",
        value,
    )


@pytest.mark.parametrize("value", MALFORMED_STORAGE)
def test_malformed_storage_is_400(value: str) -> None:
    assert well_formed_error(value) is not None
    with pytest.raises(ApiError) as info:
        parse_write_body({"storage": {"representation": "storage", "value": value}}, required=True)
    assert info.value.status == 400
    assert info.value.title.startswith("Error parsing xhtml: ")


def test_error_positions_are_in_the_body() -> None:
    assert well_formed_error("<p>x<b></p>") == "mismatched tag at [row,col]: [1,10]"
    assert well_formed_error("<p>ok</p>\n<p>&bogus;</p>") == "undefined entity at [row,col]: [2,4]"


def test_anchor_text_and_markers() -> None:
    value = (
        "<p>foo <b>bar</b> &amp; baz</p><p>foo</p>"
        '<ac:structured-macro ac:name="x"><ac:parameter ac:name="p">foo</ac:parameter>'
        "<ac:plain-text-body><![CDATA[foo]]></ac:plain-text-body></ac:structured-macro>"
    )
    text = anchor_text(value)
    assert text.text == "foo bar & baz\nfoo\n"  # parameters and CDATA are not page text
    assert text.starts("foo") == [0, 14]
    second = insert_marker(value, "foo", 1, "r1")
    assert second is not None
    assert second.startswith(
        '<p>foo <b>bar</b> &amp; baz</p><p><ac:inline-comment-marker ac:ref="r1">foo'
        "</ac:inline-comment-marker></p>"
    )
    across = insert_marker(value, "o bar &", 0, "r2")
    assert across is not None and well_formed_error(across) is None
    assert across.startswith(
        '<p>fo<ac:inline-comment-marker ac:ref="r2">o </ac:inline-comment-marker>'
        '<b><ac:inline-comment-marker ac:ref="r2">bar</ac:inline-comment-marker></b>'
        '<ac:inline-comment-marker ac:ref="r2"> &amp;</ac:inline-comment-marker> baz</p>'
    )
    assert has_marker(across, "r2") and not has_marker(across, "r1")
    assert insert_marker(value, "foo", 2, "r3") is None


def test_descriptor_parsing() -> None:
    parsed = parse_descriptor(
        {
            "key": "k",
            "baseUrl": "https://a.test/",
            "authentication": {"type": "jwt"},
            "lifecycle": {"installed": "/i"},
            "scopes": ["read"],
            "modules": {
                "webhooks": [
                    {"event": "page_created", "url": "/w/1"},
                    {"event": "page_created", "url": "/w/2"},
                ]
            },
        }
    )
    assert parsed["base_url"] == "https://a.test" and parsed["scopes"] == ["READ"]
    assert parsed["webhooks"] == {"page_created": ["/w/1", "/w/2"]}
    for bad in (
        [],
        {"key": "k"},
        {"key": "k", "baseUrl": "u", "lifecycle": {}, "authentication": {"type": "jwt"}},
    ):
        with pytest.raises(InstallError):
            parse_descriptor(bad)


def test_a_forge_install_of_the_connect_app_is_named_in_its_lifecycle_payloads() -> None:
    from simulator.apps import add_forge_install
    from simulator.install import lifecycle_body
    from simulator.site import build
    from simulator.store import ConnectInstall

    sim = build(public_url="https://127.0.0.1:9443")
    forge = add_forge_install(sim, "ari:cloud:ecosystem::app/x", "http://127.0.0.1:8000/forge")
    again = add_forge_install(sim, "ari:cloud:ecosystem::app/x", "http://127.0.0.1:8000/forge")
    assert again is forge and len(sim.store.forge_apps) == 1, "same app and URL: kept"
    other = add_forge_install(sim, "ari:cloud:ecosystem::app/x", "http://127.0.0.1:8000/other")
    assert other.installation_id != forge.installation_id

    def app(installation_id: str) -> ConnectInstall:
        return ConnectInstall(
            key="reactor",
            base_url="http://127.0.0.1:8000",
            client_key="ck",
            shared_secret="s",
            account_id="acc",
            installation_id=installation_id,
        )

    site = "https://127.0.0.1:9443/wiki"
    linked = lifecycle_body(sim, app(forge.installation_id), site, "installed")
    assert linked["installationId"] == forge.installation_id
    assert "installationId" not in lifecycle_body(sim, app(""), site, "installed")
