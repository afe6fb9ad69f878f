"""update_page / update_blogpost: read, pure transform, version + 1, re-read on conflict."""

from __future__ import annotations

import json

import pytest

from app.confluence import APP_EDIT_MARKER, ConfluenceClient, is_app_edit
from app.confluence.errors import Conflict, NotEditable, is_permanent
from tests.confluence.fake import FakeConfluence

FOOTER = "<p>Reviewed by the reactor.</p>"


def add_footer(title: str, body: str) -> tuple[str, str]:
    return title, body if body.endswith(FOOTER) else body + FOOTER


@pytest.fixture
def page_id(fake: FakeConfluence) -> str:
    space = fake.add_space("DEV")
    return str(fake.add_content(space["id"], "Plan", "<p>v1</p>")["id"])


def puts(fake: FakeConfluence) -> list[dict[str, object]]:
    return [json.loads(r.content) for r in fake.requests if r.method == "PUT"]


async def test_concurrent_user_edit_keeps_both_changes_with_one_new_version(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    edits = iter(["<p>user's words</p>"])

    def user_saves_first(content_id: str) -> None:
        body = next(edits, None)
        if body is not None:  # the user saves between our read and our write, once
            fake.user_edit(content_id, body)

    fake.before_put = user_saves_first
    result = await client.update_page(page_id, add_footer, note="footer added")

    versions = fake.content[page_id]["versions"]
    assert [v["number"] for v in versions] == [1, 2, 3]  # user's version 2, exactly one of ours
    ours = [v for v in versions if is_app_edit(v["message"])]
    assert len(ours) == 1 and ours[0]["message"] == f"{APP_EDIT_MARKER} footer added"
    assert fake.content[page_id]["body"] == "<p>user's words</p>" + FOOTER
    assert result.changed and result.attempts == 2 and result.content.version_number == 3
    sent = puts(fake)
    assert [p["version"] for p in sent] == [
        {"number": 2, "message": "[confluence-reactor] footer added"},
        {"number": 3, "message": "[confluence-reactor] footer added"},
    ]
    assert sent[1]["body"] == {"representation": "storage", "value": "<p>user's words</p>" + FOOTER}
    gets = [r for r in fake.requests if r.method == "GET"]
    assert all(r.url.params["body-format"] == "storage" for r in gets)


async def test_noop_transform_sends_nothing(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    result = await client.update_page(page_id, lambda title, body: (title, body))
    assert not result.changed and result.content.version_number == 1
    assert puts(fake) == [] and len(fake.requests) == 1


async def test_idempotent_transform_second_run_is_a_noop(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    first = await client.update_page(page_id, add_footer)
    second = await client.update_page(page_id, add_footer)
    assert first.changed and not second.changed
    assert len(fake.content[page_id]["versions"]) == 2


async def test_title_change_alone_is_written(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    result = await client.update_page(page_id, lambda title, body: (f"[Done] {title}", body))
    assert result.changed and fake.content[page_id]["title"] == "[Done] Plan"


async def test_conflicts_are_bounded(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    fake.before_put = lambda cid: fake.user_edit(cid, "<p>busy</p>")  # a user always wins
    with pytest.raises(Conflict) as caught:
        await client.update_page(page_id, add_footer, max_attempts=3)
    assert len(puts(fake)) == 3
    assert caught.value.current_version == 4 and caught.value.provided_version == 4
    assert not is_permanent(caught.value)
    assert not any(is_app_edit(v["message"]) for v in fake.content[page_id]["versions"])


async def test_trashed_page_is_not_edited(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    fake.content[page_id]["status"] = "trashed"
    with pytest.raises(NotEditable) as caught:
        await client.update_page(page_id, add_footer)
    assert is_permanent(caught.value) and puts(fake) == []


async def test_blogpost_update_retries_conflicts_too(
    client: ConfluenceClient, fake: FakeConfluence
) -> None:
    space = fake.add_space("NEWS")
    post = fake.add_content(space["id"], "Weekly", "<p>a</p>", kind="blogpost")
    once = iter([True])

    def user_saves_once(cid: str) -> None:
        if next(once, False):
            fake.user_edit(cid, "<p>b</p>")

    fake.before_put = user_saves_once
    result = await client.update_blogpost(post["id"], add_footer)
    assert result.attempts == 2 and fake.content[post["id"]]["body"] == "<p>b</p>" + FOOTER
    assert [v["number"] for v in fake.content[post["id"]]["versions"]] == [1, 2, 3]


async def test_comment_update_rereads_on_conflict_and_resolves(
    client: ConfluenceClient, fake: FakeConfluence, page_id: str
) -> None:
    top = await client.create_footer_comment("<p>teh plan</p>", page_id=page_id)
    once = iter([True])

    def user_edits_once(cid: str) -> None:
        if next(once, False):
            fake.user_edits_comment(cid, "<p>teh plan, revised</p>")

    fake.before_put = user_edits_once
    result = await client.update_comment(
        top.id, lambda body: body.replace("teh", "the"), note="typo"
    )
    assert result.changed and result.attempts == 2
    assert result.content.storage == "<p>the plan, revised</p>"
    assert result.content.version is not None and result.content.version.number == 3
    assert is_app_edit(result.content.version.message)
    unchanged = await client.update_comment(top.id, lambda body: body)
    assert not unchanged.changed
    assert (await client.find_comment(top.id)).kind == "footer"

    fake.before_put = None
    fake.content[page_id]["body"] = "<p>ship it</p>"
    inline = await client.comment_on_text(page_id, "ship", "<p>when?</p>")
    assert (await client.find_comment(inline.id)).kind == "inline"
    resolved = await client.resolve_comment(inline)
    assert resolved.resolution_status == "resolved" and resolved.storage == "<p>when?</p>"
    with pytest.raises(ValueError):
        await client.resolve_comment(top)
