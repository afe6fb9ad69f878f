"""What real Confluence refuses, the simulator refuses: bodies without a value, long titles,
malformed storage and wiki markup, checked before the version; inline comments mark the page."""

from __future__ import annotations

from typing import Any

import httpx

from tests.simulator.conftest import make_page

V2 = "/wiki/api/v2"
STORAGE = {"representation": "storage", "value": "<p>v2</p>"}
NO_VALUE = {"representation": "storage"}
MALFORMED = {"representation": "storage", "value": "<p>x<b></p>"}
WIKI = {"representation": "wiki", "value": "h1. Title\n*bold*"}
RICH = (
    "<h2>Setup &amp; deploy</h2><p>Don&rsquo;t&nbsp;panic &mdash; it&#8217;s fine.</p>\n"
    '<ac:structured-macro ac:name="code" ac:schema-version="1">'
    '<ac:parameter ac:name="language">python</ac:parameter>'
    "<ac:plain-text-body><![CDATA[if a < b && c:\n    print('<p>')]]></ac:plain-text-body>"
    "</ac:structured-macro>"
    '<p><ac:link><ri:user ri:account-id="712020:abc" /></ac:link> <br/>see '
    '<ac:link><ri:page ri:content-title="Home" /></ac:link></p>'
    '<ac:structured-macro ac:name="info"><ac:rich-text-body><p>note</p></ac:rich-text-body>'
    "</ac:structured-macro>"
)


def _put(page: dict[str, Any], body: Any, number: int, title: str = "T") -> dict[str, Any]:
    return {
        "id": page["id"],
        "status": "current",
        "title": title,
        "body": body,
        "version": {"number": number},
    }


async def _storage(client: httpx.AsyncClient, page_id: str) -> dict[str, Any]:
    got = await client.get(f"{V2}/pages/{page_id}?body-format=storage")
    data: dict[str, Any] = got.json()
    return data


async def _comment(
    client: httpx.AsyncClient, kind: str, page_id: str, body: Any, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"{V2}/{kind}-comments", json={"pageId": page_id, "body": body} | extra
    )


def _selection(text: str, count: int = 1, index: int = 0) -> dict[str, Any]:
    return {
        "inlineCommentProperties": {
            "textSelection": text,
            "textSelectionMatchCount": count,
            "textSelectionMatchIndex": index,
        }
    }


async def test_a_body_without_a_value_is_400_and_changes_nothing(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "T", "<p>keep me</p>")
    url = f"{V2}/pages/{page['id']}"
    for body in (NO_VALUE, {"storage": NO_VALUE}):
        emptied = await client.put(url, json=_put(page, body, 2))
        assert emptied.status_code == 400, emptied.text
        assert emptied.json()["errors"][0]["title"] == "body.value is required."
    after = await _storage(client, page["id"])
    assert after["version"]["number"] == 1
    assert after["body"]["storage"]["value"] == "<p>keep me</p>"
    created = await client.post(
        f"{V2}/pages", json={"spaceId": space["id"], "title": "New", "body": NO_VALUE}
    )
    assert created.status_code == 400
    blog = await client.post(
        f"{V2}/blogposts", json={"spaceId": space["id"], "title": "New", "body": NO_VALUE}
    )
    assert blog.status_code == 400
    for kind, extra in (("footer", {}), ("inline", _selection("keep"))):
        assert (await _comment(client, kind, page["id"], NO_VALUE, **extra)).status_code == 400
        made = await _comment(client, kind, page["id"], STORAGE, **extra)
        assert made.status_code == 201
        edit = await client.put(
            f"{V2}/{kind}-comments/{made.json()['id']}",
            json={"version": {"number": 2}, "body": NO_VALUE},
        )
        assert edit.status_code == 400


async def test_titles_are_at_most_255_characters(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    longest = "t" * 255
    page = await make_page(client, space["id"], longest)
    assert page["title"] == longest
    for kind in ("pages", "blogposts"):
        refused = await client.post(
            f"{V2}/{kind}", json={"spaceId": space["id"], "title": "t" * 256, "body": STORAGE}
        )
        assert refused.status_code == 400, kind
        assert refused.json()["errors"][0]["title"] == "Title cannot be longer than 255 characters."
    draft = await client.post(
        f"{V2}/pages",
        json={"spaceId": space["id"], "status": "draft", "title": "t" * 300, "body": STORAGE},
    )
    assert draft.status_code == 400
    renamed = await client.put(
        f"{V2}/pages/{page['id']}", json=_put(page, STORAGE, 2, title="x" * 300)
    )
    assert renamed.status_code == 400
    assert (await _storage(client, page["id"]))["title"] == longest


async def test_a_malformed_request_is_400_whatever_its_version(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "T")
    url = f"{V2}/pages/{page['id']}"
    for stale in (1, 5):
        for body in (NO_VALUE, MALFORMED, WIKI):
            answer = await client.put(url, json=_put(page, body, stale))
            assert answer.status_code == 400, (stale, body, answer.text)
        long_title = await client.put(url, json=_put(page, STORAGE, stale, title="x" * 256))
        assert long_title.status_code == 400
        assert (await client.put(url, json=_put(page, STORAGE, stale))).status_code == 409
    comment = (await _comment(client, "footer", page["id"], STORAGE)).json()
    comment_url = f"{V2}/footer-comments/{comment['id']}"
    for body in (NO_VALUE, MALFORMED, WIKI):
        answer = await client.put(comment_url, json={"version": {"number": 1}, "body": body})
        assert answer.status_code == 400, (body, answer.text)
    conflict = await client.put(comment_url, json={"version": {"number": 1}, "body": STORAGE})
    assert conflict.status_code == 409
    # restoring trashed content ignores the body's contents, not its shape
    assert (await client.delete(url)).status_code == 204
    assert (await client.put(url, json=_put(page, MALFORMED, 2))).status_code == 400
    assert (await client.get(f"{url}?status=trashed")).json()["status"] == "trashed"


async def test_storage_must_be_well_formed(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    refused = await client.post(
        f"{V2}/pages", json={"spaceId": space["id"], "title": "Bad", "body": MALFORMED}
    )
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["code"] == "INVALID_MESSAGE"
    assert error["title"] == "Error parsing xhtml: mismatched tag at [row,col]: [1,10]"
    page = await make_page(client, space["id"], "Rich", RICH)
    assert (await _storage(client, page["id"]))["body"]["storage"]["value"] == RICH
    url = f"{V2}/pages/{page['id']}"
    assert (await client.put(url, json=_put(page, MALFORMED, 2))).status_code == 400
    kept = await client.put(url, json=_put(page, {"storage": {**STORAGE, "value": RICH}}, 2))
    assert kept.status_code == 200
    for kind, extra in (("footer", {}), ("inline", _selection("panic"))):
        assert (await _comment(client, kind, page["id"], MALFORMED, **extra)).status_code == 400
        made = await _comment(client, kind, page["id"], {**STORAGE, "value": RICH}, **extra)
        assert made.status_code == 201, made.text
        edit = await client.put(
            f"{V2}/{kind}-comments/{made.json()['id']}",
            json={"version": {"number": 2}, "body": MALFORMED},
        )
        assert edit.status_code == 400
    assert (await _storage(client, page["id"]))["version"]["number"] == 2


async def test_wiki_is_refused_with_a_clear_message(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    refused = await client.post(
        f"{V2}/pages", json={"spaceId": space["id"], "title": "Wiki", "body": {"wiki": WIKI}}
    )
    assert refused.status_code == 400
    title = refused.json()["errors"][0]["title"]
    assert "wiki is not supported by the simulator" in title and "send storage" in title
    page = await make_page(client, space["id"], "T")
    assert (await _comment(client, "footer", page["id"], WIKI)).status_code == 400


async def test_admin_text_and_space_names_become_escaped_storage(
    client: httpx.AsyncClient,
) -> None:
    made = await client.post("/_sim/spaces", json={"key": "RD", "name": "R&D <lab>"})
    assert made.status_code == 201
    home_id = made.json()["homepageId"]
    home = await _storage(client, home_id)
    assert home["body"]["storage"]["value"] == "<p>Welcome to R&amp;D &lt;lab&gt;.</p>"
    again = await client.put(
        f"{V2}/pages/{home_id}",
        json=_put(home, home["body"]["storage"], 2, title=home["title"]),
    )
    assert again.status_code == 200, again.text
    acted = await client.post(
        "/_sim/act/pages",
        json={"as": "admin@example.com", "spaceKey": "RD", "title": "N", "body": "Tom & <Jerry>"},
    )
    assert acted.status_code == 201, acted.text
    stored = await _storage(client, acted.json()["id"])
    assert stored["body"]["storage"]["value"] == "<p>Tom &amp; &lt;Jerry&gt;</p>"


async def test_an_inline_comment_marks_its_selection_in_the_page(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Marked", "<p>foo <b>bar</b> foo</p>")
    made = await _comment(client, "inline", page["id"], STORAGE, **_selection("foo", 2, 1))
    assert made.status_code == 201
    ref = made.json()["properties"]["inlineMarkerRef"]
    after = await _storage(client, page["id"])
    assert after["body"]["storage"]["value"] == (
        "<p>foo <b>bar</b> "
        f'<ac:inline-comment-marker ac:ref="{ref}">foo</ac:inline-comment-marker></p>'
    )
    assert after["version"]["number"] == 1  # marking is not a new version
    reply = await client.post(
        f"{V2}/inline-comments", json={"parentCommentId": made.json()["id"], "body": STORAGE}
    )
    assert reply.status_code == 201
    assert (await _storage(client, page["id"]))["body"]["storage"] == after["body"]["storage"]
    # the marker adds no text: the same selection still counts twice
    again = await _comment(client, "inline", page["id"], STORAGE, **_selection("foo", 2, 0))
    assert again.status_code == 201
    both = (await _storage(client, page["id"]))["body"]["storage"]["value"]
    assert both.count("<ac:inline-comment-marker") == 2


async def test_an_inline_comment_dangles_when_its_text_is_edited_away(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Edited", "<p>keep this</p><p>drop that</p>")
    url = f"{V2}/pages/{page['id']}"
    ids = {}
    for word in ("keep", "drop"):
        made = await _comment(client, "inline", page["id"], STORAGE, **_selection(word))
        ids[word] = made.json()["id"]
    marked = (await _storage(client, page["id"]))["body"]["storage"]
    # an edit that keeps the markup keeps both comments open
    kept = await client.put(url, json=_put(page, marked, 2, title="Edited"))
    assert kept.status_code == 200
    for word in ("keep", "drop"):
        got = await client.get(f"{V2}/inline-comments/{ids[word]}")
        assert got.json()["resolutionStatus"] == "open"
    # an edit that drops the second paragraph (and its marker) leaves that comment dangling
    first = marked["value"].split("</p>")[0] + "</p><p>new text</p>"
    edited = await client.put(url, json=_put(page, {**STORAGE, "value": first}, 3, title="Edited"))
    assert edited.status_code == 200
    statuses = {
        word: (await client.get(f"{V2}/inline-comments/{ids[word]}")).json()["resolutionStatus"]
        for word in ids
    }
    assert statuses == {"keep": "open", "drop": "dangling"}
    dangling = await client.get(
        f"{V2}/pages/{page['id']}/inline-comments", params={"resolution-status": "dangling"}
    )
    assert [c["id"] for c in dangling.json()["results"]] == [ids["drop"]]
    # "A dangling comment cannot be updated"; resolving to the state it has changes nothing
    update = {"version": {"number": 2}, "body": STORAGE, "resolved": True}
    refused = await client.put(f"{V2}/inline-comments/{ids['drop']}", json=update)
    assert refused.status_code == 400
    same = {"version": {"number": 2}, "body": STORAGE, "resolved": False}
    kept_open = await client.put(f"{V2}/inline-comments/{ids['keep']}", json=same)
    assert kept_open.status_code == 200
    assert kept_open.json()["resolutionStatus"] == "open"
    assert "resolutionLastModifierId" not in kept_open.json()


async def test_label_prefixes_follow_each_endpoint_s_enum(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    """A space's labels filter by my/team only; content endpoints take one prefix."""
    page = await make_page(client, space["id"], "Labelled")
    space_labels = f"{V2}/spaces/{space['id']}/labels"
    assert (await client.get(space_labels, params={"prefix": "team"})).status_code == 200
    assert (await client.get(space_labels, params={"prefix": "global"})).status_code == 400
    page_labels = f"{V2}/pages/{page['id']}/labels"
    assert (await client.get(page_labels, params={"prefix": "global"})).status_code == 200
    two = await client.get(page_labels, params=[("prefix", "global"), ("prefix", "my")])
    assert two.status_code == 400
    every = await client.get(f"{V2}/labels", params=[("prefix", "global"), ("prefix", "my")])
    assert every.status_code == 200


async def test_a_comment_on_an_attachment_says_the_simulator_does_not_keep_them(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "With a file")
    att = await client.post(
        "/_sim/act/attachments",
        json={"as": "admin@example.com", "contentId": page["id"], "fileName": "a.txt",
              "mediaType": "text/plain", "size": 3},
    )  # fmt: skip
    body = {"representation": "storage", "value": "<p>c</p>"}
    known = await client.post(
        f"{V2}/footer-comments", json={"attachmentId": att.json()["id"], "body": body}
    )
    assert known.status_code == 400 and "not supported by the simulator" in known.text
    unknown = await client.post(
        f"{V2}/footer-comments", json={"attachmentId": "att999999", "body": body}
    )
    assert unknown.status_code == 404
