"""Welcome and template-guard reactions: pure decisions, and their effects on a fake Confluence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from app.atlassian.events import Event
from app.errors import ConfigError
from tests.reactions.events import page_event
from tests.reactions.fake import APP, FakeConfluence
from workers import storage
from workers.dispatch import JobContext
from workers.ops import Comment
from workers.reactions import OptionError, welcome
from workers.reactions import template_guard as guard
from workers.reactor import Reactor
from workers.rules import compile_rules

Job = Callable[[Event], JobContext]
MakeReactor = Callable[..., Reactor]

GUARD_RULES = """
version: 1
rules:
  - name: rfc-template
    reaction: template_guard
    options: {parent: "100", sections: [Context, Decision, Consequences]}
"""
WELCOME_RULES = """
version: 1
rules:
  - name: hello
    reaction: welcome
    space: DEV
    options: {message: "welcome!", checklist: ["Add an owner"]}
"""


def test_missing_sections_ignores_case_numbering_and_colons() -> None:
    body = "<h1>1. context:</h1><p>x</p><h2>DECISION</h2><h3>Other</h3>"
    assert guard.missing_sections(body, ["Context", "Decision", "Consequences"]) == ["Consequences"]
    assert guard.missing_sections("<p>Context</p>", ["Context"]) == ["Context"]


def test_decide_create_update_resolve_or_nothing() -> None:
    assert guard.decide([], None).action == "none"
    created = guard.decide(["Decision"], None)
    assert created.action == "create" and "Decision" in created.body
    existing = Comment("c1", created.body, APP, 1)
    assert guard.decide(["Decision"], existing).action == "none"
    changed = guard.decide(["Consequences"], existing)
    assert (changed.action, changed.comment_id) == ("update", "c1")
    resolved = guard.decide([], existing)
    assert resolved.action == "update" and guard.RESOLVED in resolved.body
    assert storage.well_formed(created.body) is None and storage.well_formed(resolved.body) is None


def test_welcome_body_is_well_formed_tasks() -> None:
    body = welcome.welcome_body("u<1>", "hi & welcome", ["a < b"])
    assert storage.well_formed(body) is None
    assert "<ac:task-body>a &lt; b</ac:task-body>" in body
    assert 'ri:account-id="u&lt;1&gt;"' in body


@pytest.mark.parametrize(
    ("make", "options", "option"),
    [
        (guard.make, {"sections": ["A"]}, "parent"),
        (guard.make, {"parent": "1", "sections": []}, "sections"),
        (guard.make, {"parent": "1", "sections": ["A"], "extra": 1}, "extra"),
        (welcome.make, {"message": ""}, "message"),
        (welcome.make, {"checklist": [1]}, "checklist"),
        (guard.make, {"parent": "", "sections": ["A"]}, "parent"),
        (guard.make, {"parent": [], "sections": ["A"]}, "parent"),
        (guard.make, {"parent": "1", "sections": ["", "Context"]}, "sections"),
        (guard.make, {"parent": "1", "sections": " "}, "sections"),
        (welcome.make, {"checklist": ["Read this", ""]}, "checklist"),
    ],
)
def test_option_errors_name_the_option(
    make: Callable[..., object], options: dict[str, object], option: str
) -> None:
    with pytest.raises(OptionError) as info:
        make(options)
    assert info.value.option == option


async def test_an_empty_option_entry_is_a_problem_at_start_up() -> None:
    text = (
        "version: 1\nrules:\n  - name: g\n    reaction: template_guard\n"
        '    options: {parent: "1", sections: ["", Context]}\n'
    )
    with pytest.raises(ConfigError) as info:
        compile_rules(text, "r.yml")
    assert info.value.problems == [
        "r.yml:5: rules[0] (g).options: option 'sections': entries must not be empty"
    ]
    assert welcome.make({"checklist": []}) is not None  # no tasks at all is a choice


async def test_template_guard_lifecycle_one_comment_edited_in_place(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    react = reactor(compile_rules(GUARD_RULES, "r.yml"))

    async def edit(body: str, version: int) -> None:
        page = fake.contents["1001"]
        fake.contents["1001"] = replace(page, body=body, version=version, version_message="")
        event = page_event(version=version)
        await react(event, job(event))
        await react(event, job(event))  # duplicate delivery / re-run

    await edit("<h2>Context</h2>", 3)
    (comment,) = fake.comments["1001"]
    assert "Decision" in comment.body and "Consequences" in comment.body
    await edit("<h2>Context</h2><h2>Decision</h2>", 4)
    (comment,) = fake.comments["1001"]
    assert "Decision" not in storage.parse(comment.body).text.split("requires:")[1]
    await edit("<h2>Context</h2><h2>Decision</h2><h2>Consequences</h2>", 5)
    (comment,) = fake.comments["1001"]
    assert guard.RESOLVED in comment.body
    await edit("<h2>Context</h2><h2>Decision</h2><h2>Consequences</h2><p>more</p>", 6)
    writes = [c[0] for c in fake.writes()]
    assert writes == ["comment", "update-comment", "update-comment"]


async def test_template_guard_ignores_pages_elsewhere(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    fake.contents["1001"] = replace(fake.contents["1001"], parent_id="999")
    event = page_event()
    await reactor(compile_rules(GUARD_RULES, "r.yml"))(event, job(event))
    assert fake.writes() == []


async def test_welcome_once_per_page_in_chosen_spaces(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    react = reactor(compile_rules(WELCOME_RULES, "r.yml"))
    created = page_event("page_created", version=1)
    await react(created, job(created))
    await react(created, job(created))
    elsewhere = page_event("page_created", version=1, space="OPS", page_id="1001")
    await react(elsewhere, job(elsewhere))
    (comment,) = fake.comments["1001"]
    assert "welcome!" in comment.body and 'ri:account-id="user-1"' in comment.body


async def test_template_guard_parent_by_title(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    from workers.ops import Content

    fake.add(Content(id="100", kind="page", title="Architecture", body="", version=1))
    rules = GUARD_RULES.replace('parent: "100"', "parent: Architecture")
    event = page_event()
    await reactor(compile_rules(rules, "r.yml"))(event, job(event))
    assert [c[0] for c in fake.writes()] == ["comment"]
    fake.contents["100"] = replace(fake.contents["100"], title="Elsewhere")
    fake.comments.clear()
    later = page_event(version=3)
    fake.contents["1001"] = replace(fake.contents["1001"], version=3)
    await reactor(compile_rules(rules, "r.yml"))(later, job(later))
    assert fake.comments == {}


def test_dev_rules_file_is_valid() -> None:
    from app.devstack import DEV_RULES
    from workers.rules import load_rules

    assert len(load_rules(DEV_RULES)) == 3
