"""Label conditions on the simulator through the real client: Confluence keeps labels in lower
case, so a condition written with capitals must still match."""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings
from tests.reactions.conftest import ANN, Sim
from tests.reactions.events import page_event
from tests.reactions.test_rerun_comments import job
from workers.rules import compile_rules

RULES = """
version: 1
rules:
  - name: rfc
    on: [page.updated]
    when: {label: RFC}
    actions: [comment: "Thanks for the RFC"]
"""


async def test_a_label_condition_written_in_capitals_matches_the_stored_label(
    sim: Sim, settings: Settings, redis: Redis
) -> None:
    made = await sim.post("/_sim/act/pages", {"as": ANN, "spaceId": sim.space_id, "title": "RFC"})
    label = await sim.post("/_sim/act/labels", {"as": ANN, "contentId": made["id"], "name": "RFC"})
    assert "rfc" in str(label) and "RFC" not in str(label.get("labels", ""))
    event = page_event(page_id=made["id"], version=1)
    await sim.reactor(compile_rules(RULES))(event, job(event, 1, settings, redis))
    found = await sim.results(f"/wiki/api/v2/pages/{made['id']}/footer-comments")
    assert [c["body"]["storage"]["value"] for c in found] == ["<p>Thanks for the RFC</p>"]
