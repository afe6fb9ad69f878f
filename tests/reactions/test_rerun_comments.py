"""Comments survive a worker that died mid-run: the rerun finds what the first run posted.

The simulator runs in-process (its ASGI app behind httpx) and the reactions go through the
real Confluence client. A first run writes but never records its effect as done (its worker
was killed), so the second run must find the comment on Confluence instead of posting it again:
for replies to footer *and* inline comments, and for inline comments on pages *and* blog posts.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.settings import Settings
from tests.reactions.conftest import ANN, Sim
from tests.reactions.events import comment_event, page_event
from workers import effects
from workers.dispatch import JobContext
from workers.routing import Router
from workers.rules import compile_rules


def job(event: Event, attempt: int, settings: Settings, redis: Redis) -> JobContext:
    # ``after`` collects the writes that record effects as done; nobody sends them here, as
    # when the worker dies before the end of the run.
    log = structlog.get_logger("test").bind(event_id=event.id)
    return JobContext(event.id, attempt, settings, redis, log, after=[])


@pytest.mark.parametrize("kind", ["footer", "inline"])
async def test_a_reply_is_posted_once_when_the_run_is_repeated(
    kind: str, sim: Sim, settings: Settings, redis: Redis
) -> None:
    page = await sim.post(
        "/wiki/api/v2/pages",
        {
            "spaceId": sim.space_id,
            "title": "RFC",
            "body": {"representation": "storage", "value": "<p>TODO pick a cache</p>"},
        },
    )
    comment: dict[str, Any] = {
        "pageId": page["id"],
        "body": {"representation": "storage", "value": "<p>who?</p>"},
    }
    if kind == "inline":
        comment["inlineCommentProperties"] = {
            "textSelection": "TODO",
            "textSelectionMatchCount": 1,
            "textSelectionMatchIndex": 0,
        }
    thread = await sim.post(f"/wiki/api/v2/{kind}-comments", comment)
    router = Router()

    @router.on("comment.created", name="ack")
    async def ack(event: Event, ctx: Any) -> None:
        await ctx.reply(event.content_id, "<p>ack</p>")

    reactor = sim.reactor(router)
    event = comment_event(comment_id=thread["id"], page_id=page["id"], actor="user-x")
    await reactor(event, job(event, 1, settings, redis))
    await reactor(event, job(event, 2, settings, redis))
    replies = await sim.results(f"/wiki/api/v2/{kind}-comments/{thread['id']}/children")
    assert [r["body"]["storage"]["value"] for r in replies] == ["<p>ack</p>"]


@pytest.mark.parametrize("content_type", ["page", "blogpost"])
async def test_an_inline_comment_is_posted_once_when_the_worker_died_after_posting(
    content_type: str,
    sim: Sim,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = await sim.post(
        "/_sim/act/pages",
        {
            "as": ANN,
            "type": content_type,
            "spaceId": sim.space_id,
            "title": "News",
            "body": "<p>TODO pick a cache</p>",
        },
    )
    rules = compile_rules(
        """
version: 1
rules:
  - name: todo
    on: [blogpost.created, page.created]
    actions:
      - inline_comment: {match: "TODO", body: "Who owns this?"}
"""
    )
    reactor = sim.reactor(rules)
    name = "blog_created" if content_type == "blogpost" else "page_created"
    event = page_event(
        name, page_id=made["id"], version=1, title="News", actor="user-x", content_type=content_type
    )
    recorded = effects.EffectLedger.applied

    async def killed(*args: Any, **kwargs: Any) -> None:
        raise SystemExit("worker killed")

    monkeypatch.setattr(effects.EffectLedger, "applied", killed)
    with pytest.raises(SystemExit):
        await reactor(event, job(event, 1, settings, redis))
    monkeypatch.setattr(effects.EffectLedger, "applied", recorded)
    await reactor(event, job(event, 2, settings, redis))
    found = await sim.results(f"/wiki/api/v2/{content_type}s/{made['id']}/inline-comments")
    assert [c["body"]["storage"]["value"] for c in found] == ["<p>Who owns this?</p>"]


async def test_a_label_condition_reads_a_blog_posts_labels(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    rules = compile_rules(
        """
version: 1
rules:
  - name: announce
    on: [blogpost.updated, page.updated]
    when: {label: announce}
    actions:
      - comment: "Announced"
"""
    )
    reactor = sim.reactor(rules)
    posts: dict[str, str] = {}
    for content_type in ("blogpost", "page"):
        made = await sim.post(
            "/_sim/act/pages",
            {"as": ANN, "type": content_type, "spaceId": sim.space_id, "title": content_type},
        )
        await sim.post("/_sim/act/labels", {"as": ANN, "contentId": made["id"], "name": "announce"})
        posts[content_type] = made["id"]
        name = "blog_updated" if content_type == "blogpost" else "page_updated"
        event = page_event(
            name, page_id=made["id"], version=1, actor="user-x", content_type=content_type
        )
        await reactor(event, job(event, 1, settings, redis))
    for content_type, content_id in posts.items():
        found = await sim.results(f"/wiki/api/v2/{content_type}s/{content_id}/footer-comments")
        assert [c["body"]["storage"]["value"] for c in found] == ["<p>Announced</p>"], content_type
