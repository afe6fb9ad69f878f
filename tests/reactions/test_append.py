"""``append``/``prepend`` are skipped when the fragment is already on the page, however
Confluence has spelt it since (on the simulator through the real client)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings
from tests.reactions.conftest import ANN, Sim
from tests.reactions.events import page_event
from tests.reactions.test_rerun_comments import job
from workers import rule_actions, storage
from workers.rules import compile_rules

RULES = """
version: 1
rules:
  - name: footer
    on: [page.created, page.updated]
    actions:
      - append: "<p>Owner: please name one</p>"
"""


async def test_an_inline_comment_on_the_appended_text_does_not_make_it_appended_again(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    made = await sim.post(
        "/_sim/act/pages",
        {"as": ANN, "spaceId": sim.space_id, "title": "RFC", "body": "<p>Hello</p>"},
    )
    page_id = made["id"]
    reactor = sim.reactor(compile_rules(RULES))
    created = page_event("page_created", page_id=page_id, version=1, title="RFC")
    await reactor(created, job(created, 1, settings, redis))
    # a reader comments inline on the appended text: Confluence wraps it in a marker in place
    await sim.post(
        "/_sim/act/comments",
        {
            "as": ANN,
            "pageId": page_id,
            "body": "<p>me</p>",
            "inlineCommentProperties": {
                "textSelection": "please name one",
                "textSelectionMatchCount": 1,
                "textSelectionMatchIndex": 0,
            },
        },
    )
    path = f"/wiki/api/v2/pages/{page_id}"
    page = (await sim.admin.get(path, params={"body-format": "storage"})).json()
    marked = page["body"]["storage"]["value"]
    assert "ac:inline-comment-marker" in marked
    await sim.post(
        f"/_sim/act/pages/{page_id}/edit",
        {"as": ANN, "body": marked.replace("Hello", "Hello world")},
    )
    updated = page_event(page_id=page_id, version=page["version"]["number"] + 1, title="RFC")
    await reactor(updated, job(updated, 1, settings, redis))
    final = (await sim.admin.get(path, params={"body-format": "storage"})).json()
    assert final["body"]["storage"]["value"].count("Owner:") == 1


def test_the_already_there_check_compares_one_spelling_of_storage() -> None:
    transform = rule_actions._append_transform("<p>It's <br/>done</p>", at_end=True)
    respelt = (
        '<p>It&#39;s <br></br><ac:inline-comment-marker ac:ref="1">done'
        "</ac:inline-comment-marker></p>"
    )
    assert transform("T", "<p>a</p>" + respelt) == ("T", "<p>a</p>" + respelt)
    assert transform("T", "<p>a</p>") == ("T", "<p>a</p><p>It's <br/>done</p>")
    assert storage.canonical('<p b="2" a="1">x&nbsp;<![CDATA[<y>]]><!-- c --></p>') == (
        '<p a="1" b="2">x\xa0&lt;y&gt;</p>'
    )
    assert storage.canonical("<p>broken") == "<p>broken"
