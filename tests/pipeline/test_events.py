"""The event model, built from recorded payload shapes of both delivery routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.atlassian.events import EVENT_TYPES, Event, event_id, from_connect, from_forge
from app.errors import InvalidPayload

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"
TENANT = "site-7f3a"


def load(source: str, name: str) -> Any:
    return json.loads((FIXTURES / source / f"{name}.json").read_text())


# name -> (type, content id, content type, version, container, space key, space id, label)
CONNECT = {
    "page_created": ("page.created", "13139970", "page", 1, None, "ENG", "65634", None),
    "page_updated": ("page.updated", "1188560897", "page", 2, None, "ENG", "20000001", None),
    "page_trashed": ("page.trashed", "10000001", "page", 3, None, "ENG", "20000001", None),
    "page_removed": ("page.deleted", "10000001", "page", 3, None, "ENG", "20000001", None),
    "page_restored": ("page.restored", "10000001", "page", 4, None, "ENG", "20000001", None),
    "blog_created": ("blogpost.created", "20000042", "blogpost", 1, None, "ENG", "20000001", None),
    "blog_updated": ("blogpost.updated", "20000042", "blogpost", 2, None, "ENG", "20000001", None),
    "comment_created": (
        "comment.created",
        "10000002",
        "comment",
        1,
        "10000001",
        "ENG",
        "20000001",
        None,
    ),
    "comment_updated": (
        "comment.updated",
        "10000003",
        "comment",
        2,
        "10000001",
        "ENG",
        "20000001",
        None,
    ),
    "comment_removed": (
        "comment.deleted",
        "10000002",
        "comment",
        2,
        "10000001",
        "ENG",
        "20000001",
        None,
    ),
    "label_added": (
        "label.added",
        "10000001",
        "page",
        None,
        None,
        "ENG",
        "20000001",
        "needs-review",
    ),
    "label_removed": (
        "label.removed",
        "10000001",
        "page",
        None,
        None,
        "ENG",
        "20000001",
        "needs-review",
    ),
    "attachment_created": (
        "attachment.created",
        "att30000007",
        "attachment",
        1,
        "10000001",
        "ENG",
        None,
        None,
    ),
}

FORGE = {
    "created_page": ("page.created", "838205441", "page", 1, None, "SP", "827392002", None),
    "updated_page": ("page.updated", "838205441", "page", 2, None, "SP", "827392002", None),
    "trashed_page": ("page.trashed", "838205441", "page", 3, None, "SP", "827392002", None),
    "deleted_page": ("page.deleted", "838205441", "page", 3, None, "SP", "827392002", None),
    "restored_page": ("page.restored", "838205441", "page", 4, None, "SP", "827392002", None),
    "created_blogpost": (
        "blogpost.created",
        "838205500",
        "blogpost",
        1,
        None,
        "SP",
        "827392002",
        None,
    ),
    "updated_blogpost": (
        "blogpost.updated",
        "838205500",
        "blogpost",
        2,
        None,
        "SP",
        "827392002",
        None,
    ),
    "created_comment": (
        "comment.created",
        "838205600",
        "comment",
        1,
        "838205441",
        "SP",
        "827392002",
        None,
    ),
    "updated_comment": (
        "comment.updated",
        "838205601",
        "comment",
        2,
        "838205441",
        "SP",
        "827392002",
        None,
    ),
    "deleted_comment": (
        "comment.deleted",
        "838205600",
        "comment",
        2,
        "838205441",
        "SP",
        "827392002",
        None,
    ),
    "added_label": (
        "label.added",
        "838205441",
        "page",
        None,
        None,
        "SP",
        "827392002",
        "needs-review",
    ),
    "removed_label": (
        "label.removed",
        "838205441",
        "page",
        None,
        None,
        "SP",
        "827392002",
        "needs-review",
    ),
    "created_attachment": (
        "attachment.created",
        "att838205700",
        "attachment",
        1,
        "838205441",
        "SP",
        "827392002",
        None,
    ),
}


def check(event: Event, expected: tuple[Any, ...]) -> None:
    type_, content_id, content_type, version, container, space_key, space_id, label = expected
    assert event.tenant == TENANT
    assert (event.type, event.content_id, event.content_type) == (type_, content_id, content_type)
    assert event.version == version
    assert event.container_id == container
    assert (event.space_key, event.space_id) == (space_key, space_id)
    assert event.label == label
    assert event.timestamp > 1_500_000_000_000, "epoch milliseconds"
    named = label if type_.startswith("label.") else None
    assert event.id == event_id(TENANT, type_, content_id, version, event.timestamp, named)
    assert Event.from_json(event.to_json()) == event


def test_every_handled_type_has_a_fixture_of_each_source() -> None:
    assert sorted({v[0] for v in CONNECT.values()}) == sorted(EVENT_TYPES)
    assert sorted({v[0] for v in FORGE.values()}) == sorted(EVENT_TYPES)
    assert {p.stem for p in (FIXTURES / "connect").glob("*.json")} == set(CONNECT)
    assert {p.stem for p in (FIXTURES / "forge").glob("*.json")} == set(FORGE)


@pytest.mark.parametrize("name", sorted(CONNECT))
def test_connect_payloads(name: str) -> None:
    body = load("connect", name)
    event = from_connect(TENANT, name, body)
    check(event, CONNECT[name])
    assert event.source == "connect"
    assert event.actor == "712020:5b4f0c1e-actor"
    assert event.raw == body


@pytest.mark.parametrize("name", sorted(FORGE))
def test_forge_payloads(name: str) -> None:
    body = load("forge", name)
    event = from_forge(TENANT, body)
    check(event, FORGE[name])
    assert event.source == "forge"
    assert event.actor == "4ad9aa0c52dc1b420a791d12"
    assert event.self_generated is False


def test_update_trigger_and_suppressed_notifications() -> None:
    blog = from_connect(TENANT, "blog_updated", load("connect", "blog_updated"))
    assert blog.update_trigger == "edit_page" and blog.suppress_notifications is True
    page = from_forge(TENANT, load("forge", "updated_page"))
    assert page.update_trigger == "edit_page" and page.suppress_notifications is False


def test_numeric_and_string_ids_give_the_same_event() -> None:
    body = load("connect", "page_updated")
    as_string = json.loads(json.dumps(body))
    as_string["page"]["id"] = str(body["page"]["id"])
    a = from_connect(TENANT, "page_updated", body)
    b = from_connect(TENANT, "page_updated", as_string)
    assert a.id == b.id and a.content_id == b.content_id == "1188560897"


def test_one_change_delivered_by_connect_and_by_forge_has_one_id() -> None:
    connect = load("connect", "page_updated")
    connect["page"]["id"] = 838205441
    forge = load("forge", "updated_page")
    a = from_connect(TENANT, "page_updated", connect)
    b = from_forge(TENANT, forge)
    assert (a.source, b.source) == ("connect", "forge")
    assert a.id == b.id
    assert from_forge("other-site", forge).id != b.id


def test_a_newer_version_is_a_new_event() -> None:
    body = load("forge", "updated_page")
    first = from_forge(TENANT, body)
    body["payload"]["content"]["version"]["number"] = 3
    assert from_forge(TENANT, body).id != first.id


@pytest.mark.parametrize(
    ("make", "body"),
    [
        (lambda b: from_connect(TENANT, "page_viewed", b), {"page": {"id": 1}}),
        (lambda b: from_connect(TENANT, "page_updated", b), {"page": {"title": "no id"}}),
        (lambda b: from_connect(TENANT, "page_updated", b), ["not", "an", "object"]),
        (lambda b: from_forge(TENANT, b), {"eventType": "avi:confluence:liked:page"}),
        (lambda b: from_forge(TENANT, b), {"eventType": "avi:confluence:created:page"}),
    ],
)
def test_unknown_or_incomplete_shapes_are_invalid(make: Any, body: Any) -> None:
    with pytest.raises(InvalidPayload):
        make(body)


@pytest.mark.parametrize("content_id", ["abc", "12-3", "١٢٣", "1" * 21, "att", " 12 x", "-5"])
def test_content_ids_that_confluence_could_not_have_sent_are_invalid(content_id: str) -> None:
    connect = load("connect", "page_updated")
    connect["page"]["id"] = content_id
    connect["page"].pop("idAsString", None)
    forge = load("forge", "updated_page")
    forge["payload"]["content"]["id"] = content_id
    for make in (
        lambda: from_connect(TENANT, "page_updated", connect),
        lambda: from_forge(TENANT, forge),
    ):
        with pytest.raises(InvalidPayload, match="is not a Confluence content id"):
            make()


def test_one_attachment_change_delivered_both_ways_has_one_id() -> None:
    """Connect names an attachment by its number, Forge by ``att`` and the number."""
    connect = load("connect", "attachment_created")
    connect["attachments"][0]["id"] = 838205700
    connect["attachments"][0].pop("idAsString", None)
    connect["timestamp"] = 1
    forge = load("forge", "created_attachment")
    forge["eventCreatedDate"] = 2
    via_connect = from_connect(TENANT, "attachment_created", connect)
    via_forge = from_forge(TENANT, forge)
    assert via_connect.content_id == via_forge.content_id == "att838205700"
    assert via_connect.version == via_forge.version
    assert via_connect.id == via_forge.id


def test_numeric_and_attachment_content_ids_are_taken() -> None:
    body = load("connect", "page_updated")
    body["page"]["id"] = "1" * 20
    body["page"].pop("idAsString", None)
    assert from_connect(TENANT, "page_updated", body).content_id == "1" * 20
    attached = load("connect", "attachment_created")
    attached["attachments"][0]["id"] = "att30000007"
    attached["attachments"][0].pop("idAsString", None)
    assert from_connect(TENANT, "attachment_created", attached).content_id == "att30000007"


@pytest.mark.parametrize("version", ["²", "٣", "1" * 19, "9" * 5000, {"number": "³"}, 10**18, -1])
def test_a_version_no_confluence_page_can_have_is_invalid_not_a_crash(version: Any) -> None:
    connect = load("connect", "page_updated")
    connect["page"]["version"] = version
    with pytest.raises(InvalidPayload, match="version must be a whole number"):
        from_connect(TENANT, "page_updated", connect)
    forge = load("forge", "updated_page")
    forge["payload"]["content"]["version"] = version
    with pytest.raises(InvalidPayload, match="version must be a whole number"):
        from_forge(TENANT, forge)


def test_versions_up_to_eighteen_digits_are_read() -> None:
    connect = load("connect", "page_updated")
    for given, read in [("7", 7), ({"number": "9" * 18}, 10**18 - 1), ("", None), ("v2", None)]:
        connect["page"]["version"] = given
        assert from_connect(TENANT, "page_updated", connect).version == read


def test_a_label_event_does_not_read_its_contents_version() -> None:
    for source, name in [("forge", "added_label"), ("connect", "label_added")]:
        body = load(source, name)
        content = body.get("content") or body.get("labeled") or {}
        content["version"] = "²"  # named by its label: the version plays no part
        event = from_forge(TENANT, body) if source == "forge" else from_connect(TENANT, name, body)
        assert event.type == "label.added" and event.version is None
