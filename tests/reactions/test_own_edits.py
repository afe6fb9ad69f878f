"""Whose edit is it: the app's own versions are decided by their author, on the simulator
through the real Confluence client, never by the marker a person can type in a message."""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings
from tests.reactions.conftest import ANN, Sim
from tests.reactions.events import page_event
from tests.reactions.test_rerun_comments import job
from workers.rules import compile_rules

SECRETS = "version: 1\nrules:\n  - name: secrets\n    reaction: secrets\n"
KEY = "AKIAZ7QXJ3LM4NOP5QRS"


async def _page(sim: Sim) -> str:
    made = await sim.post(
        "/_sim/act/pages",
        {"as": ANN, "spaceId": sim.space_id, "title": "Ops", "body": "<p>notes</p>"},
    )
    return str(made["id"])


async def _body(sim: Sim, page_id: str) -> str:
    got = await sim.admin.get(f"/wiki/api/v2/pages/{page_id}", params={"body-format": "storage"})
    return str(got.json()["body"]["storage"]["value"])


async def test_a_person_who_types_the_apps_marker_is_still_reacted_to(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    page_id = await _page(sim)
    await sim.post(
        f"/_sim/act/pages/{page_id}/edit",
        {"as": ANN, "body": f"<p>aws key {KEY}</p>", "message": "[confluence-reactor] typo"},
    )
    reactor = sim.reactor(compile_rules(SECRETS))
    event = page_event(page_id=page_id, version=2, title="Ops", actor="ann-account")
    await reactor(event, job(event, 1, settings, redis))
    assert KEY not in await _body(sim, page_id)
    assert len(await sim.results(f"/wiki/api/v2/pages/{page_id}/footer-comments")) == 1


async def test_the_apps_own_edit_is_still_ignored(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    page_id = await _page(sim)
    rules = (
        "version: 1\nrules:\n  - name: footer\n    on: page.updated\n    actions:\n"
        "      - append: '<p>Footer</p>'\n      - comment: 'Seen'\n"
    )
    reactor = sim.reactor(compile_rules(rules))
    await sim.post(f"/_sim/act/pages/{page_id}/edit", {"as": ANN, "body": "<p>more</p>"})
    first = page_event(page_id=page_id, version=2, title="Ops", actor="ann-account")
    await reactor(first, job(first, 1, settings, redis))
    # the append's echo (version 3), delivered without an actor: its author decides
    echo = page_event(page_id=page_id, version=3, title="Ops", actor="")
    await reactor(echo, job(echo, 1, settings, redis))
    assert len(await sim.results(f"/wiki/api/v2/pages/{page_id}/footer-comments")) == 1
