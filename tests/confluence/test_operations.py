"""Every operation of the API guide against the schema-checked fake site.

The fake validates each request (parameters and body) and each success response against the
official schemas, so these tests fail on any shape drift, not only on wrong values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import httpx
import pytest

from app.budget.hook import Priority
from app.confluence import EVENT_HEADER, ConfluenceClient
from app.confluence.errors import NotFound, SelectionNotFound
from tests.confluence.conftest import RecordingBudget
from tests.confluence.fake import FakeConfluence

T = TypeVar("T")


async def collect(iterator: AsyncIterator[T]) -> list[T]:
    return [item async for item in iterator]


@pytest.fixture
def site_data(fake: FakeConfluence) -> dict[str, str]:
    space = fake.add_space("DEV", "Development")
    page = fake.add_content(space["id"], "Runbook", "<p>deploy on Friday, deploy with care</p>")
    child = fake.add_content(space["id"], "Child", "<p>c</p>", parent=page["id"])
    blog = fake.add_content(space["id"], "News", "<p>hello</p>", kind="blogpost")
    return {"space": space["id"], "page": page["id"], "child": child["id"], "blog": blog["id"]}


# -- pages ------------------------------------------------------------------------------------


async def test_get_page_reads_storage_body_and_string_ids(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    page = await client.get_page(site_data["page"])
    assert page.id == site_data["page"] and page.space_id == site_data["space"]
    assert page.storage == "<p>deploy on Friday, deploy with care</p>"
    assert page.version_number == 1
    assert fake.requests[-1].url.params["body-format"] == "storage"


async def test_get_page_without_body_format_has_empty_body(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    page = await client.get_page(site_data["page"], body_format=None)
    assert page.body == {} and page.storage == ""
    assert "body-format" not in fake.requests[-1].url.params


async def test_list_pages_filters_by_space_and_title(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    other = fake.add_space("OPS")
    fake.add_content(other["id"], "Runbook", "<p>elsewhere</p>")
    found = await collect(client.iter_pages(space_ids=[site_data["space"]], title="Runbook"))
    assert [p.id for p in found] == [site_data["page"]]
    assert fake.requests[-1].url.params["space-id"] == site_data["space"]


async def test_space_pages_and_children(
    client: ConfluenceClient, site_data: dict[str, str]
) -> None:
    in_space = await collect(client.iter_space_pages(site_data["space"], body_format="storage"))
    assert {p.title for p in in_space} == {"Home", "Runbook", "Child"}
    assert all(p.storage for p in in_space)
    children = await collect(client.iter_page_children(site_data["page"]))
    assert [(c.id, c.type) for c in children] == [(site_data["child"], "page")]


async def test_create_page_and_draft(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    page = await client.create_page(
        site_data["space"], "New", "<p>x</p>", parent_id=site_data["page"]
    )
    assert fake.content[page.id]["parentId"] == site_data["page"]
    draft = await client.create_page(site_data["space"], None, "<p>draft</p>", draft=True)
    assert fake.content[draft.id]["status"] == "draft"
    root = await client.create_page(site_data["space"], "Top", "<p>t</p>", root_level=True)
    assert fake.requests[-1].url.params["root-level"] == "true" and root.title == "Top"


async def test_put_page_sends_next_version(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    current = await client.get_page(site_data["page"])
    written = await client.put_page(current, title="Runbook v2", body="<p>new</p>")
    assert written.version_number == 2 and written.title == "Runbook v2"
    assert fake.content[site_data["page"]]["versions"][-1]["message"] == "[confluence-reactor]"


async def test_delete_then_purge_page(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    await client.delete_page(site_data["child"])
    assert fake.content[site_data["child"]]["status"] == "trashed"
    await client.delete_page(site_data["child"], purge=True)
    assert site_data["child"] not in fake.content
    assert fake.requests[-1].url.params["purge"] == "true"


async def test_page_versions(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    fake.user_edit(site_data["page"], "<p>2</p>")
    fake.user_edit(site_data["page"], "<p>3</p>")
    versions = await collect(client.iter_page_versions(site_data["page"], limit=2))
    assert [v.number for v in versions] == [3, 2, 1]
    assert versions[0].content_id == site_data["page"]
    with pytest.raises(ValueError):
        client.iter_page_versions(site_data["page"], body_format="storage", limit=51)


# -- blog posts -------------------------------------------------------------------------------


async def test_blogpost_lifecycle(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    listed = await collect(client.iter_blogposts())
    assert [b.id for b in listed] == [site_data["blog"]]
    in_space = await collect(client.iter_space_blogposts(site_data["space"]))
    assert [b.id for b in in_space] == [site_data["blog"]]
    post = await client.create_blogpost(site_data["space"], "Launch", "<p>soon</p>")
    got = await client.get_blogpost(post.id)
    assert got.storage == "<p>soon</p>"
    updated = await client.put_blogpost(got, title="Launch!", body="<p>now</p>")
    assert updated.version_number == 2
    result = await client.update_blogpost(post.id, lambda t, b: (t, b + "<p>more</p>"))
    assert result.changed and result.content.storage == "<p>now</p><p>more</p>"
    await client.delete_blogpost(post.id)
    assert fake.content[post.id]["status"] == "trashed"


# -- spaces -----------------------------------------------------------------------------------


async def test_spaces(client: ConfluenceClient, site_data: dict[str, str]) -> None:
    spaces = await collect(client.iter_spaces())
    assert [s.key for s in spaces] == ["DEV"]
    space = await client.get_space(site_data["space"])
    assert space.name == "Development" and space.homepage_id
    assert (await client.space_by_key("DEV")).id == site_data["space"]
    with pytest.raises(NotFound):
        await client.space_by_key("NOPE")
    created = await client.create_space("Ops", key="OPS", description="operations")
    assert created.key == "OPS" and created.id


# -- comments ---------------------------------------------------------------------------------


async def test_footer_comments_and_replies(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    top = await client.create_footer_comment("<p>first</p>", page_id=site_data["page"])
    assert top.kind == "footer" and top.page_id == site_data["page"]
    reply = await client.reply_to_comment(top, "<p>answer</p>")
    assert reply.parent_comment_id == top.id
    sent = fake.requests[-1].read()
    assert b"pageId" not in sent  # a reply names only its parent
    listed = await collect(client.iter_footer_comments(site_data["page"]))
    assert [c.id for c in listed] == [top.id]  # root comments only
    replies = await collect(client.iter_comment_replies(top.id))
    assert [c.id for c in replies] == [reply.id]
    fetched = await client.get_comment(top.id)
    assert fetched.storage == "<p>first</p>"
    await client.delete_comment(reply.id)
    assert reply.id not in fake.comments
    on_blog = await client.create_footer_comment("<p>b</p>", blog_post_id=site_data["blog"])
    blog_comments = await collect(
        client.iter_footer_comments(site_data["blog"], container="blogposts")
    )
    assert [c.id for c in blog_comments] == [on_blog.id]


async def test_inline_comment_anchored_to_second_match(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    comment = await client.comment_on_text(site_data["page"], "deploy", "<p>why?</p>", occurrence=1)
    props = fake.requests[-1].read()
    assert b'"textSelectionMatchCount":2' in props and b'"textSelectionMatchIndex":1' in props
    assert comment.kind == "inline" and comment.inline_selection == "deploy"
    listed = await collect(
        client.iter_inline_comments(site_data["page"], resolution_status=["open"])
    )
    assert [c.id for c in listed] == [comment.id]
    assert (await client.get_comment(comment.id, kind="inline")).resolution_status == "open"
    reply = await client.reply_to_comment(comment, "<p>because</p>")
    assert reply.kind == "inline" and b"inlineCommentProperties" not in fake.requests[-1].read()
    await client.delete_comment(comment.id, kind="inline")
    with pytest.raises(SelectionNotFound):
        await client.comment_on_text(site_data["page"], "Tuesday", "<p>?</p>")


async def test_inline_comment_explicit_counts(
    client: ConfluenceClient, site_data: dict[str, str]
) -> None:
    made = await client.create_inline_comment(
        "<p>x</p>", selection="care", match_count=1, page_id=site_data["page"]
    )
    assert made.page_id == site_data["page"]
    with pytest.raises(ValueError):
        await client.create_inline_comment(
            "<p>x</p>", selection="care", match_count=1, match_index=1, page_id=site_data["page"]
        )


# -- attachments and labels -------------------------------------------------------------------


async def test_attachments(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    first = fake.add_attachment(site_data["page"], "a.txt")
    fake.add_attachment(site_data["child"], "b.txt")
    everything = await collect(client.iter_attachments())
    assert len(everything) == 2 and fake.requests[-1].url.params["limit"] == "50"
    on_page = await collect(client.iter_attachments(page_id=site_data["page"]))
    assert [a.id for a in on_page] == [first["id"]] and on_page[0].id.startswith("att")
    one = await client.get_attachment(first["id"])
    assert one.file_size == 42 and one.media_type == "text/plain"
    await client.delete_attachment(first["id"], purge=True)
    assert first["id"] not in fake.attachments


async def test_labels(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    fake.add_label("howto", page=site_data["page"])
    fake.add_label("team", space=site_data["space"])
    fake.add_label("orphan")
    assert len(await collect(client.iter_labels())) == 3
    assert [x.name for x in await collect(client.iter_labels(page_id=site_data["page"]))] == [
        "howto"
    ]
    assert [x.name for x in await collect(client.iter_labels(space_id=site_data["space"]))] == [
        "team"
    ]


# -- v1 search --------------------------------------------------------------------------------


async def test_cql_search(
    client: ConfluenceClient, fake: FakeConfluence, site_data: dict[str, str]
) -> None:
    hits = await collect(client.search('type=page and title~"Run"', limit=2, excerpt="highlight"))
    assert {h.content_id for h in hits} == set(fake.content)  # the fake returns everything
    assert all(h.entity_type == "content" for h in hits)
    assert fake.requests[-1].url.path == "/wiki/rest/api/search"


async def test_a_search_page_reserves_the_request_and_every_hit(
    client: ConfluenceClient, budget: RecordingBudget, site_data: dict[str, str]
) -> None:
    """A page of hits costs 1 + one per hit, as any list: reserving only the hits let
    concurrent sweeps spend past the hour's quota."""
    hits, _ = await client.search_page("type=page", limit=7)
    assert hits
    assert [cost for _, cost, _ in budget.reserved] == [8]


async def test_user_search_costs_two_points_per_user(
    client: ConfluenceClient, fake: FakeConfluence, budget: RecordingBudget
) -> None:
    fake.users = [
        {"type": "known", "accountId": f"acc-{n}", "accountType": "atlassian",
         "email": "", "publicName": f"u{n}", "displayName": f"User {n}"}
        for n in range(3)
    ]  # fmt: skip
    users = await collect(client.search_users('user.fullname~"User"', limit=2))
    assert [u.account_id for u in users] == ["acc-0", "acc-1", "acc-2"]
    assert [cost for _, cost, _ in budget.reserved] == [5, 5]
    assert [o.actual_cost for o in budget.observations] == [5, 3]


# -- cross-cutting ----------------------------------------------------------------------------


async def test_every_call_is_budgeted_and_correlated(
    client: ConfluenceClient,
    fake: FakeConfluence,
    budget: RecordingBudget,
    site_data: dict[str, str],
) -> None:
    await client.get_page(site_data["page"])
    await collect(client.iter_pages(limit=10))
    await client.create_footer_comment("<p>x</p>", page_id=site_data["page"])
    assert all(r.headers[EVENT_HEADER] == "evt-1" for r in fake.requests)
    assert all(r.headers["Authorization"].startswith("Basic ") for r in fake.requests)
    assert budget.reserved == [
        ("acme.atlassian.net", 2, Priority.REACTION),
        ("acme.atlassian.net", 11, Priority.REACTION),
        ("acme.atlassian.net", 1, Priority.REACTION),
    ]
    assert [o.actual_cost for o in budget.observations] == [2, 1 + 3, 1]  # three pages listed
    assert [o.status for o in budget.observations] == [200, 200, 201]


async def test_without_event_id_no_header(fake: FakeConfluence, budget: RecordingBudget) -> None:
    from tests.confluence.conftest import basic_site

    fake.add_space("X")
    async with httpx.AsyncClient(transport=fake.transport) as http:
        quiet = ConfluenceClient(http, basic_site(), budget, priority=Priority.RECONCILE)
        await collect(quiet.iter_spaces())
    assert EVENT_HEADER not in fake.requests[-1].headers
    assert budget.reserved[-1][2] is Priority.RECONCILE
