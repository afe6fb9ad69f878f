"""A rule's inline comment is posted once per rule, action, matched text and occurrence, on the
simulator through the real client: editing or moving the rules file does not post it again,
nor does the upgrade from the key's earlier form (which held the file's path and line)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from app.errors import Defer
from app.settings import Settings
from tests.reactions.conftest import ANN, Sim
from tests.reactions.events import comment_event, page_event
from tests.reactions.test_rerun_comments import job
from workers.client_ops import ClientOps
from workers.effects import EFFECT_TTL, EffectLedger, effect_key
from workers.rules import compile_rules

RULES = """
version: 1
rules:
  - name: todo
    on: [page.created, page.updated]
    actions:
      - inline_comment: {match: "TODO", body: "Who owns this?"}
"""


async def _page(sim: Sim) -> str:
    made = await sim.post(
        "/_sim/act/pages",
        {"as": ANN, "spaceId": sim.space_id, "title": "RFC", "body": "<p>TODO pick a cache</p>"},
    )
    return str(made["id"])


async def _next_version(sim: Sim, page_id: str, version: int) -> None:
    await sim.post(f"/_sim/act/pages/{page_id}/edit", {"as": ANN, "title": f"RFC v{version}"})


async def test_editing_or_moving_the_rules_file_does_not_post_the_comment_again(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    page_id = await _page(sim)
    first = page_event("page_created", page_id=page_id, version=1, title="RFC")
    await sim.reactor(compile_rules(RULES, "/etc/reactor/rules.yml"))(
        first, job(first, 1, settings, redis)
    )
    edited = "# reviewed\nversion: 1\nrules:\n  - name: other\n    on: page.created\n" + (
        "    actions:\n      - comment: hi\n" + RULES.split("rules:\n", 1)[1]
    )
    await _next_version(sim, page_id, 2)
    second = page_event(page_id=page_id, version=2, title="RFC v2")
    await sim.reactor(compile_rules(edited, "/app/rules.yml"))(
        second, job(second, 1, settings, redis)
    )
    found = await sim.results(f"/wiki/api/v2/pages/{page_id}/inline-comments")
    assert [c["body"]["storage"]["value"] for c in found] == ["<p>Who owns this?</p>"]


async def test_a_comment_recorded_under_the_keys_earlier_form_is_not_posted_again(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    page_id = await _page(sim)
    # an installation's record from before: the key held the rules file's path and line
    former = f"inline:{page_id}:/etc/reactor/rules.yml:7:TODO:0"
    ledger = EffectLedger(redis, settings.redis_prefix)
    await ledger.done(effect_key("tenant-a", "rule:todo", former), "earlier-comment")
    event = page_event(page_id=page_id, version=1, title="RFC")
    await sim.reactor(compile_rules(RULES, "/etc/reactor/rules.yml"))(
        event, job(event, 1, settings, redis)
    )
    assert await sim.results(f"/wiki/api/v2/pages/{page_id}/inline-comments") == []
    # and it is recorded under the key's new form from then on
    now = f"inline:{page_id}:0:TODO:0"
    state = await ledger.state(effect_key("tenant-a", "rule:todo", now))
    assert state == ("done", "earlier-comment")
    assert (
        await redis.ttl(
            f"{settings.redis_prefix}effect:" + effect_key("tenant-a", "rule:todo", now)
        )
        > EFFECT_TTL - 60
    )


RACE_RULES = """
version: 1
rules:
  - name: todo
    on: [page.updated, comment.created]
    actions:
      - inline_comment: {match: "TODO", body: "Who owns this?"}
"""


async def test_two_events_of_one_page_at_once_post_a_shared_once_comment_once(
    sim: Sim, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a page event and a comment event of one page: different content, so the job layer runs
    # them at the same time; both want the rule's one inline comment on "TODO"
    page_id = await _page(sim)
    thread = await sim.post(
        "/wiki/api/v2/footer-comments",
        {"pageId": page_id, "body": {"representation": "storage", "value": "<p>hm</p>"}},
    )
    original = ClientOps.create_inline_comment

    async def slow(self: ClientOps, *args: Any) -> str:
        await asyncio.sleep(0.3)  # the POST in flight while the other run claims
        return await original(self, *args)

    monkeypatch.setattr(ClientOps, "create_inline_comment", slow)
    reactor = sim.reactor(compile_rules(RACE_RULES))
    updated = page_event(page_id=page_id, version=1, title="RFC", actor="user-x")
    commented = comment_event(comment_id=thread["id"], page_id=page_id, actor="user-y")
    outcomes = await asyncio.gather(
        reactor(updated, job(updated, 1, settings, redis)),
        reactor(commented, job(commented, 1, settings, redis)),
        return_exceptions=True,
    )
    waits = [o for o in outcomes if isinstance(o, Defer)]
    assert len(waits) == 1 and [o for o in outcomes if o is not None] == waits
    assert waits[0].delay <= 10
    # the waiting event runs again: the comment is there, recorded, not posted again
    later = commented if outcomes[1] is waits[0] else updated
    await reactor(later, job(later, 1, settings, redis))
    found = await sim.results(f"/wiki/api/v2/pages/{page_id}/inline-comments")
    assert [c["body"]["storage"]["value"] for c in found] == ["<p>Who owns this?</p>"]


async def test_a_claim_whose_run_died_is_taken_over_after_its_lease(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    page_id = await _page(sim)
    ledger = EffectLedger(redis, settings.redis_prefix, lease_seconds=0.0)
    key = effect_key("tenant-a", "rule:todo", f"inline:{page_id}:0:TODO:0")
    # another event's run claimed the comment and died before writing it; its lease is over
    assert await ledger.claim(key, "tenant-a", page_id, "rule:todo", owner="ev_dead") == (
        "new",
        None,
    )
    event = page_event(page_id=page_id, version=1, title="RFC")
    await sim.reactor(compile_rules(RULES))(event, job(event, 1, settings, redis))
    found = await sim.results(f"/wiki/api/v2/pages/{page_id}/inline-comments")
    assert len(found) == 1
