"""Pure request builders and result readers, checked against the official request schemas."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.confluence import pages
from app.confluence.errors import InvalidResponse
from app.confluence.models import Comment, Page, SearchResult, User
from tests.confluence.openapi import operation_for

V2 = "/wiki/api/v2"


def check(method: str, path: str, body: dict[str, Any]) -> None:
    request = httpx.Request(method, f"https://x.test{path}", json=body)
    operation_for(method, path).check_request(request, path)


def page(version: int = 4, status: str = "current") -> Page:
    return Page.from_json(
        {"id": 77, "status": status, "title": "T", "spaceId": 9, "version": {"number": version}}
    )


def test_update_request_is_version_plus_one_and_valid() -> None:
    body = pages.update_request(
        page(), title="T2", body="<p>b</p>", message=pages.edit_message("x")
    )
    assert body["version"] == {"number": 5, "message": "[confluence-reactor] x"}
    assert body["id"] == "77" and body["status"] == "current"
    check("PUT", f"{V2}/pages/77", body)
    check("PUT", f"{V2}/blogposts/77", body)


def test_update_needs_a_version() -> None:
    unversioned = Page.from_json({"id": "1", "title": "t"})
    with pytest.raises(InvalidResponse):
        pages.update_request(unversioned, title="t", body="", message="m")


def test_create_requests() -> None:
    published = pages.create_content_request(space_id="9", title="T", body="<p/>", parent_id="3")
    check("POST", f"{V2}/pages", published)
    draft = pages.create_content_request(space_id="9", title=None, body="", draft=True)
    assert draft["status"] == "draft" and "title" not in draft
    check("POST", f"{V2}/blogposts", draft)
    with pytest.raises(ValueError):
        pages.create_content_request(space_id="9", title="", body="")
    space = pages.create_space_request(name="Dev", key="DEV", description="d")
    check("POST", f"{V2}/spaces", space)
    with pytest.raises(ValueError):
        pages.create_space_request(name="Dev")


def test_comment_requests() -> None:
    top = pages.footer_comment_request("<p>c</p>", page_id="1")
    reply = pages.footer_comment_request("<p>r</p>", parent_comment_id="5")
    assert set(reply) == {"parentCommentId", "body"}
    for body in (top, reply):
        check("POST", f"{V2}/footer-comments", body)
    with pytest.raises(ValueError):
        pages.footer_comment_request("x", page_id="1", parent_comment_id="5")
    with pytest.raises(ValueError):
        pages.footer_comment_request("x")
    inline = pages.inline_comment_request(
        "<p>i</p>", selection="word", match_count=3, match_index=2, blog_post_id="8"
    )
    check("POST", f"{V2}/inline-comments", inline)
    check("POST", f"{V2}/inline-comments", pages.inline_reply_request("r", parent_comment_id="5"))
    for count, index in ((2, 2), (0, 0), (3, -1)):
        with pytest.raises(ValueError):
            pages.inline_comment_request(
                "x", selection="w", page_id="1", match_count=count, match_index=index
            )


def test_edit_marker() -> None:
    assert pages.edit_message() == "[confluence-reactor]"
    assert pages.edit_message("  add\n footer ") == "[confluence-reactor] add footer"
    assert pages.is_app_edit("[confluence-reactor] add footer")
    assert not pages.is_app_edit("fixed typo [confluence-reactor]")
    assert not pages.is_app_edit(None) and not pages.is_app_edit("")


def test_own_versions_are_decided_by_their_author_not_the_marker() -> None:
    assert pages.is_own_version("app-1", {"app-1"})
    assert not pages.is_own_version("person", {"app-1"})
    assert not pages.is_own_version(None, {"app-1"})
    assert not pages.is_own_version("person", set())  # nothing known yet: nothing is ours


def test_visible_text_and_matches() -> None:
    storage = (
        '<p>Deploy &amp; deploy</p><ac:structured-macro ac:name="info">'
        '<ac:parameter ac:name="title">deploy</ac:parameter>'
        "<ac:rich-text-body><p>deploy</p></ac:rich-text-body></ac:structured-macro>"
    )
    assert pages.visible_text(storage) == "Deploy & deploy\ndeploy"
    assert pages.count_matches(storage, "deploy") == 2
    assert pages.count_matches(storage, "&") == 1
    assert pages.count_matches(storage, "") == 0


def test_readers_are_lenient_but_need_ids() -> None:
    p = Page.from_json({"id": 12, "spaceId": 3, "body": {"storage": {"value": "<p/>"}}})
    assert (p.id, p.space_id, p.storage, p.version) == ("12", "3", "<p/>", None)
    with pytest.raises(InvalidResponse):
        Page.from_json({"title": "no id"})
    c = Comment.from_json({"id": "5", "properties": {"inlineOriginalSelection": "w"}}, "inline")
    assert c.inline_selection == "w" and c.kind == "inline"
    hit = SearchResult.from_json(
        {"content": {"id": 4, "type": "page", "space": {"key": "DEV"}}, "title": "x"}
    )
    assert (hit.content_id, hit.space_key) == ("4", "DEV")
    user = User.from_search_result({"user": {"accountId": "a1", "publicName": "ada"}})
    assert (user.account_id, user.display_name) == ("a1", "ada")


def test_schema_subset_names_its_source() -> None:
    from tests.confluence.openapi import SCHEMAS

    for name in ("confluence-v2.json", "confluence-v1-search.json"):
        document = json.loads((SCHEMAS / name).read_text())
        assert "atlassian" in document["x-source"].lower() and document["operations"]


def test_the_schema_check_catches_drift() -> None:
    good = pages.update_request(page(), title="T", body="b", message="m")
    for broken in (
        {k: v for k, v in good.items() if k != "version"},
        {**good, "status": "published"},
        {**good, "title": 7},
        {**good, "version": {"number": "5"}},
    ):
        with pytest.raises(AssertionError):
            check("PUT", f"{V2}/pages/77", broken)
    too_many = httpx.Request("GET", f"https://x.test{V2}/pages?limit=251")
    with pytest.raises(AssertionError, match="limit"):
        operation_for("GET", f"{V2}/pages").check_request(too_many, f"{V2}/pages")
    unknown = httpx.Request("GET", f"https://x.test{V2}/pages?spaceKey=DEV")
    with pytest.raises(AssertionError, match="not declared"):
        operation_for("GET", f"{V2}/pages").check_request(unknown, f"{V2}/pages")
    with pytest.raises(AssertionError, match="no documented operation"):
        operation_for("PATCH", f"{V2}/pages/1")


def test_comment_update_requests() -> None:
    inline = Comment.from_json({"id": "5", "version": {"number": 2}}, "inline")
    body = pages.comment_update_request(inline, body="<p>x</p>", message="m", resolved=True)
    assert body["version"] == {"number": 3, "message": "m"} and body["resolved"] is True
    check("PUT", f"{V2}/inline-comments/5", body)
    footer = Comment.from_json({"id": "6", "version": {"number": 1}}, "footer")
    check(
        "PUT",
        f"{V2}/footer-comments/6",
        pages.comment_update_request(footer, body="b", message="m"),
    )
    with pytest.raises(ValueError):
        pages.comment_update_request(footer, body="b", message="m", resolved=False)
    with pytest.raises(InvalidResponse):
        pages.comment_update_request(Comment.from_json({"id": "7"}, "footer"), body="", message="")
