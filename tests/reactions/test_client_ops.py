"""The reactions' adapter over the real client, against the simulator (in process, ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.budget.hook import Unmetered
from app.confluence.client import ConfluenceClient
from app.confluence.errors import BadRequest
from app.confluence.pages import edit_message
from simulator.keys import KeyPair
from tests.reactions.conftest import in_process_simulator
from workers.client_ops import ClientOps

TOKEN = "ops-token"
BASE = "https://site.test"


@pytest.fixture(scope="module")
def keys() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate("ops-install"), KeyPair.generate("ops-forge")


@pytest.fixture
async def env(keys: tuple[KeyPair, KeyPair]) -> AsyncIterator[tuple[ClientOps, httpx.AsyncClient]]:
    async with in_process_simulator(TOKEN, keys, BASE) as (admin, http, site):
        yield ClientOps(ConfluenceClient(http, site, Unmetered(), event_id="ev_test")), admin


async def _space(admin: httpx.AsyncClient) -> str:
    space = (await admin.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})).json()
    return str(space["id"])


async def test_pages_comments_replies_inline_and_labels(
    env: tuple[ClientOps, httpx.AsyncClient],
) -> None:
    ops, admin = env
    space_id = await _space(admin)
    body = {"representation": "storage", "value": "<p>TODO pick a cache</p>"}
    made = await admin.post(
        "/wiki/api/v2/pages", json={"spaceId": space_id, "title": "RFC", "body": body}
    )
    page_id = made.json()["id"]
    page = await ops.get_content("page", page_id)
    assert (page.title, page.body, page.version) == ("RFC", "<p>TODO pick a cache</p>", 1)

    assert await ops.update_content("page", page_id, lambda t, b: (t, b), "noop") is None
    updated = await ops.update_content("page", page_id, lambda t, b: (t, b + "<p>x</p>"), "add")
    assert updated is not None and updated.version == 2
    assert updated.version_message == edit_message("add")
    assert ops.writers  # the account Confluence names as author of our edit

    comment_id = await ops.create_footer_comment("page", page_id, "<p>hello</p>")
    (listed,) = await ops.footer_comments("page", page_id)
    assert (listed.id, listed.body) == (comment_id, "<p>hello</p>")
    reply_id = await ops.reply(comment_id, "<p>re</p>")
    assert [r.id for r in await ops.replies(comment_id)] == [reply_id]

    await ops.update_comment(comment_id, "<p>hello, edited</p>")
    assert (await ops.get_content("comment", comment_id)).body == "<p>hello, edited</p>"
    edited = await ops.update_content(
        "comment", comment_id, lambda t, b: (t, b.replace("edited", "redacted")), "redact"
    )
    assert edited is not None and edited.body == "<p>hello, redacted</p>"
    assert edited.parent_id == page_id and edited.parent_kind == "page"

    inline_id = await ops.create_inline_comment("page", page_id, "<p>who?</p>", "TODO", 1, 0)
    (inline,) = await ops.inline_comments("page", page_id)
    assert inline.id == inline_id
    found = await ops.get_content("comment", inline_id)  # inline: found after the footer 404
    assert found.body == "<p>who?</p>"

    labelled = await admin.post(
        "/_sim/act/labels",
        json={"as": "admin@example.com", "contentId": page_id, "name": "rfc"},
    )
    assert labelled.status_code in (200, 201), labelled.text
    assert await ops.labels("page", page_id) == ["rfc"]


async def test_blog_posts(env: tuple[ClientOps, httpx.AsyncClient]) -> None:
    ops, admin = env
    space_id = await _space(admin)
    body = {"representation": "storage", "value": "<p>news</p>"}
    made = await admin.post(
        "/wiki/api/v2/blogposts", json={"spaceId": space_id, "title": "News", "body": body}
    )
    blog_id = made.json()["id"]
    assert (await ops.get_content("blogpost", blog_id)).kind == "blogpost"
    updated = await ops.update_content("blogpost", blog_id, lambda t, b: (t + "!", b), "t")
    assert updated is not None and updated.title == "News!"
    comment_id = await ops.create_footer_comment("blogpost", blog_id, "<p>nice</p>")
    assert [c.id for c in await ops.footer_comments("blogpost", blog_id)] == [comment_id]
    assert (await ops.get_content("comment", comment_id)).parent_kind == "blogpost"


async def test_a_page_with_many_comments_is_listed_in_few_calls(
    env: tuple[ClientOps, httpx.AsyncClient],
) -> None:
    """``template_guard`` lists a page's footer comments on every update of the page: 120 of
    them take two calls (100 per page), not five (the API's default of 25)."""
    ops, admin = env
    space_id = await _space(admin)
    body = {"representation": "storage", "value": "<p>busy</p>"}
    made = await admin.post(
        "/wiki/api/v2/pages", json={"spaceId": space_id, "title": "Busy", "body": body}
    )
    page_id = made.json()["id"]
    limits = {"burst": {"POST": 1000, "GET": 1000}}
    assert (await admin.put("/_sim/ratelimit", json=limits)).status_code == 200
    for n in range(120):
        comment = {"pageId": page_id, "body": {"representation": "storage", "value": f"<p>{n}</p>"}}
        assert (await admin.post("/wiki/api/v2/footer-comments", json=comment)).status_code == 201
    seen: list[httpx.Request] = []
    ops.client._t.http.event_hooks["request"].append(_record(seen))
    listed = await ops.footer_comments("page", page_id)
    assert len(listed) == 120
    assert len([r for r in seen if r.url.path.endswith("/footer-comments")]) == 2


def _record(seen: list[httpx.Request]):  # type: ignore[no-untyped-def]
    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    return hook


async def _page_edited_after_the_read(admin: httpx.AsyncClient, body: str) -> str:
    """A page read with one "TODO"; then a person edits it to ``body``."""
    space_id = await _space(admin)
    await admin.post("/_sim/users", json={"email": "ann@example.com", "displayName": "Ann"})
    first = {"representation": "storage", "value": "<p>TODO pick a cache</p>"}
    made = await admin.post(
        "/wiki/api/v2/pages", json={"spaceId": space_id, "title": "RFC", "body": first}
    )
    page_id = str(made.json()["id"])
    edited = await admin.post(
        f"/_sim/act/pages/{page_id}/edit", json={"as": "ann@example.com", "body": body}
    )
    assert edited.status_code in (200, 201), edited.text
    return page_id


async def test_an_inline_comment_whose_selection_count_went_stale_is_posted_after_a_reread(
    env: tuple[ClientOps, httpx.AsyncClient],
) -> None:
    ops, admin = env
    page_id = await _page_edited_after_the_read(
        admin, "<p>TODO pick a cache</p><p>TODO size it</p>"
    )
    # counted on the page as read: one "TODO"; Confluence now counts two
    made = await ops.create_inline_comment("page", page_id, "<p>Who?</p>", "TODO", 1, 0)
    found = await ops.inline_comments("page", page_id)
    assert [c.id for c in found] == [made]


async def test_an_inline_comment_whose_selection_is_gone_still_fails(
    env: tuple[ClientOps, httpx.AsyncClient],
) -> None:
    ops, admin = env
    page_id = await _page_edited_after_the_read(admin, "<p>all done</p>")
    with pytest.raises(BadRequest, match="textSelectionMatchCount"):
        await ops.create_inline_comment("page", page_id, "<p>Who?</p>", "TODO", 1, 0)
