"""One change on the site, delivered by Connect and by Forge, is one event for the app.

The simulator builds both deliveries of every change it makes; the app normalises each with
its own route's code. Every kind of change must come out with the same event id and content
on both routes, or an app registered both ways would run it twice.
"""

from __future__ import annotations

from typing import Any

from app.atlassian.events import from_connect, from_forge
from simulator import comments, edits
from simulator.demo import actor_ctx, random_activity, seed
from simulator.payloads import connect_payload, forge_payload
from simulator.site import ContentEvent, Simulator
from simulator.store import Attachment

SITE = "https://sim.example/wiki"


def test_every_kind_of_change_has_one_id_on_both_routes(sim: Simulator) -> None:
    seed(sim)
    seen: list[ContentEvent] = []
    sim.listeners.append(seen.append)
    alice = sim.store.user_by_email("alice@example.com")
    assert alice is not None
    page = next(c for c in sim.store.contents.values() if c.type == "page")
    space_id = page.space_id
    ctx = actor_ctx(
        sim,
        alice.account_id,
        {
            "spaceId": space_id,
            "title": "New",
            "body": {"representation": "storage", "value": "<p>x</p>"},
        },
        SITE,
    )
    edits.create(ctx, "page")
    body: dict[str, Any] = {
        "pageId": page.id,
        "body": {"representation": "storage", "value": "<p>ok</p>"},
    }
    comments.create(actor_ctx(sim, alice.account_id, body, SITE), "footer")
    for _ in range(12):  # edits and labels among them
        random_activity(sim, SITE)
    att = Attachment(
        id=f"att{sim.store.new_id()}",
        container_id=page.id,
        container_type=page.type,
        title="a.txt",
        media_type="text/plain",
        file_size=10,
        author_id=alice.account_id,
        created_at=sim.clock.iso(),
    )
    sim.store.attachments[att.id] = att
    sim.emit("attachment_created", "attachment", att.id, alice.account_id)

    kinds = set()
    for change in seen:
        forge = forge_payload(sim.store, change, app_account="app-account")
        if forge is None:
            continue
        by_connect = from_connect("tenant-1", change.name, connect_payload(sim.store, SITE, change))
        by_forge = from_forge("tenant-1", forge)
        assert (by_forge.type, by_forge.content_id) == (by_connect.type, by_connect.content_id)
        assert by_forge.id == by_connect.id, change.name
        assert by_forge.container_id == by_connect.container_id, change.name
        kinds.add(change.kind)
    assert kinds >= {"page", "comment", "label", "attachment"}
