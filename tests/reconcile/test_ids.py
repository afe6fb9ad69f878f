"""A sweep's event for a version gets the id a real delivery of that change gets.

The payloads are the recorded Connect and Forge shapes under ``tests/fixtures`` (sources in
their READMEs); the sweep side is built from what the sweep knows: type, content id, version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.atlassian.events import event_id, from_connect, from_forge
from app.reconcile_plan import event_type

FIXTURES = Path(__file__).parents[1] / "fixtures"
SWEEP_TIME = 1_800_000_000_000  # the sweep's clock never matches the delivery's


def test_connect_page_created_and_its_reconcile_event_share_an_id() -> None:
    body = json.loads((FIXTURES / "connect" / "page_created.json").read_text())
    delivered = from_connect("tenant-a", "page_created", body)
    assert delivered.version == 1
    swept = event_id("tenant-a", event_type("page", 1), delivered.content_id, 1, SWEEP_TIME)
    assert swept == delivered.id


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("page-created.json", "page"),
        ("blogpost-created.json", "blogpost"),
        ("blogpost-updated.json", "blogpost"),
    ],
)
def test_forge_content_events_and_reconcile_events_share_ids(fixture: str, kind: str) -> None:
    body = json.loads((FIXTURES / "forge" / "events" / fixture).read_text())
    delivered = from_forge("forge:cloud", body)
    assert delivered.version is not None
    type_ = event_type(kind, delivered.version)
    assert type_ == delivered.type
    assert event_id("forge:cloud", type_, delivered.content_id, delivered.version, 0) == (
        delivered.id
    )


def test_forge_trash_event_and_the_trash_comparison_share_an_id() -> None:
    body = json.loads((FIXTURES / "forge" / "events" / "page-trashed.json").read_text())
    delivered = from_forge("forge:cloud", body)
    assert delivered.type == "page.trashed" and delivered.version is not None
    swept = event_id("forge:cloud", "page.trashed", delivered.content_id, delivered.version, 0)
    assert swept == delivered.id
