"""Comments survive a worker that died mid-run: the rerun finds what the first run posted.

The simulator runs in-process (its ASGI app behind httpx) and the reactions go through the
real Confluence client. A first run writes but never records its effect as done (its worker
was killed), so the second run must find the comment on Confluence instead of posting it again:
for replies to footer *and* inline comments, and for inline comments on pages *and* blog posts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.budget.hook import Unmetered
from app.confluence.client import ConfluenceClient
from app.confluence.site import Site
from app.settings import Settings
from simulator.keys import KeyPair
from tests.reactions.conftest import in_process_simulator
from tests.reactions.events import comment_event, page_event
from workers import effects
from workers.client_ops import ClientOps
from workers.dispatch import JobContext
from workers.reactor import Reactor, ReactorOptions
from workers.routing import Router
from workers.rules import compile_rules

TOKEN = "rerun-token"
BASE = "https://site.test"
ANN = "ann@example.com"


@dataclass
class Sim:
    admin: httpx.AsyncClient
    http: httpx.AsyncClient
    site: Site
    space_id: str

    def reactor(self, router: Router) -> Reactor:
        async def client_for(event: Event, job: JobContext) -> ClientOps:
            return ClientOps(ConfluenceClient(self.http, self.site, Unmetered(), event_id=event.id))

        return Reactor(router, client_for, ReactorOptions())

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        made = await self.admin.post(path, json=body)
        assert made.status_code in (200, 201), made.text
        data: dict[str, Any] = made.json()
        return data

    async def results(self, path: str) -> list[dict[str, Any]]:
        found = await self.admin.get(path, params={"body-format": "storage"})
        assert found.status_code == 200, found.text
        results: list[dict[str, Any]] = found.json()["results"]
        return results


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    keys = (KeyPair.generate("install"), KeyPair.generate("forge"))
    async with in_process_simulator(TOKEN, keys, BASE) as (admin, http, site):
        bare = Sim(admin, http, site, "")
        space = await bare.post("/_sim/spaces", {"key": "DEV", "name": "Dev"})
        await bare.post("/_sim/users", {"email": ANN, "displayName": "Ann"})
        yield Sim(admin, http, site, space["id"])


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
