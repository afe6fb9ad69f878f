"""A rule's inline comment is posted once per rule, action, matched text and occurrence, on the
simulator through the real client: editing or moving the rules file does not post it again,
nor does the upgrade from the key's earlier form (which held the file's path and line)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings
from tests.reactions.conftest import ANN, Sim
from tests.reactions.events import page_event
from tests.reactions.test_rerun_comments import job
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
