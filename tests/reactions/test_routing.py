"""Router registration, composition and pure matching."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.atlassian.events import Event
from tests.reactions.events import page_event
from workers.context import ReactionContext
from workers.routing import Filters, Router, check_event_pattern, event_matches


async def _noop(event: Event, ctx: ReactionContext) -> None:
    return None


def test_decorator_registers_with_filters_and_default_name() -> None:
    router = Router()

    @router.on("page.updated", space="DEV", title=r"^RFC")
    async def review(event: Event, ctx: ReactionContext) -> None:
        return None

    (reg,) = list(router)
    assert reg.name.endswith(
        "test_decorator_registers_with_filters_and_default_name.<locals>.review"
    )
    assert reg.match(page_event(space="DEV", title="RFC: x")) is True
    assert reg.match(page_event(space="OPS", title="RFC: x")) is False
    assert reg.match(page_event(space="DEV", title="Not an RFC")) is False
    assert reg.match(page_event("page_created", space="DEV", title="RFC: x")) is False


def test_event_patterns() -> None:
    assert event_matches("page.*", "page.created")
    assert not event_matches("page.*", "blogpost.created")
    assert event_matches("*", "comment.deleted")
    with pytest.raises(ValueError, match="unknown event type"):
        check_event_pattern("page.edited")
    with pytest.raises(ValueError):
        Router().on("pages.*")(_noop)


def test_a_handler_must_be_an_async_function() -> None:
    router = Router()

    def review(event: Event, ctx: ReactionContext) -> None:
        return None

    with pytest.raises(TypeError, match=r"must be an async function \(`async def review"):
        router.on("page.updated", name="review")(review)  # type: ignore[arg-type]
    assert len(router) == 0
    router.on("page.updated", name="review")(_noop)
    assert len(router) == 1


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters.build(tenant="tenant-a"), True),
        (Filters.build(tenant=["x", "y"]), False),
        (Filters.build(author="user-1"), True),
        (Filters.build(author="someone"), False),
        (Filters.build(content_type="blogpost"), False),
        (Filters.build(content_type=["page", "blogpost"]), True),
        (Filters.build(title="caching$"), True),
        (Filters.build(space=["OPS", "DEV"]), True),
    ],
)
def test_filters(filters: Filters, expected: bool) -> None:
    assert filters.match(page_event()) is expected


def test_label_filter_asks_for_labels_unless_the_event_names_one() -> None:
    filters = Filters.build(label=["rfc", "adr"])
    event = page_event()
    assert filters.match(event) is None
    assert filters.match(event, ["adr", "x"]) is True
    assert filters.match(event, ["x"]) is False
    labelled = replace(event, type="label.added", label="rfc")
    assert filters.match(labelled) is True


def test_label_filters_match_whatever_case_they_are_written_in() -> None:
    # Confluence stores labels in lower case: a label typed "RFC" is "rfc" on the page
    filters = Filters.build(label=["RFC", "Adr"])
    assert filters.labels == {"rfc", "adr"}
    assert filters.match(page_event(), ["rfc"]) is True
    assert filters.match(replace(page_event(), type="label.added", label="adr")) is True


def test_title_filter_without_a_title_does_not_match() -> None:
    event = replace(page_event(), title=None)
    assert Filters.build(title=".*").match(event) is False


def test_routers_compose_and_late_registrations_show() -> None:
    root, child = Router(), Router()
    root.on("page.created", name="a")(_noop)
    root.include(child)
    child.on("page.*", name="b")(_noop)
    assert [r.name for r in root] == ["a", "b"]
    assert [r.name for r, _ in root.candidates(page_event())] == ["b"]
    assert len(root) == 2
    with pytest.raises(ValueError):
        root.include(root)


def test_latest_only_needs_every_matching_reaction_to_agree() -> None:
    router = Router()
    router.on("page.updated", name="scan", latest_only=True)(_noop)
    older = page_event()
    assert router.latest_only(older, "page.updated")
    assert not router.latest_only(older, "page.trashed")  # the newer event would not run it
    router.on("page.*", name="audit", space="OPS")(_noop)  # does not match DEV events
    assert router.latest_only(older, "page.updated")
    router.on("page.updated", name="every-version", label="rfc")(_noop)  # may match
    assert not router.latest_only(older, "page.updated")
    assert Router().latest_only(older, "page.updated")  # nothing to run: skipping is harmless
