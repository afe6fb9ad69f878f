"""The rules file: validation with line numbers, and each action's effect on a fake Confluence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.errors import ConfigError
from app.settings import Settings
from tests.reactions.events import comment_event, page_event
from tests.reactions.fake import FakeConfluence
from workers import storage
from workers.dispatch import JobContext
from workers.ops import Content
from workers.reactor import Reactor
from workers.rules import compile_rules, load_rules

RULES = Path(__file__).parent.parent / "fixtures" / "rules"
Job = Callable[[Event], JobContext]
MakeReactor = Callable[..., Reactor]


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_rules(text, "r.yml")
    return info.value.problems


def test_valid_file_compiles_every_rule() -> None:
    router = load_rules(RULES / "valid.yml")
    names = [r.name for r in router]
    assert names[:3] == ["rule:welcome-dev", "rule:secrets", "rule:rfc-template"]
    thanks = next(r for r in router if r.name == "rule:rfc-thanks")
    assert thanks.events == ("page.created",) and thanks.dry_run is True
    assert thanks.match(page_event("page_created", title="RFC: x")) is True
    assert thanks.match(page_event("page_created", title="Notes")) is False


def test_invalid_file_reports_every_problem_with_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_rules(RULES / "invalid.yml")
    lines = [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in info.value.problems]
    assert lines == ["4", "7", "8", "12", "13", "15", "21", "23", "30", "34"]
    text = "\n".join(info.value.problems)
    assert "unknown event type 'page.edited'" in text
    assert "duplicate rule name 'one'" in text
    assert "unknown reaction 'welcom'" in text
    assert "no attribute 'titel'" in text
    assert "reply action needs comment events" in text
    assert "option 'sections'" in text


def test_yaml_syntax_error_names_the_line() -> None:
    (problem,) = _errors("rules:\n  - name: a\n    on: [page.created\n")
    assert problem.startswith("r.yml:4: not valid YAML")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rules: {}", "r.yml:1: rules: must be a list"),
        ("version: 2\nrules: []", "r.yml:1: version: only version 1"),
        ("rules:\n  - on: page.created\n    actions: [{comment: x}]", "every rule needs a name"),
        ("rules:\n  - name: a\n    on: page.created", "either `reaction:`"),
        ("rules:\n  - name: a\n    reaction: secrets\n    options: {allow: ['(']}", "r.yml:4:"),
        (
            "rules:\n  - name: a\n    reaction: secrets\n    colour: red",
            "r.yml:4: rules[0].colour: unknown key",
        ),
        (
            "rules:\n  - name: a\n    on: page.created\n    actions:\n      - comment: "
            "\"{{ ''.__class__.__mro__ }}\"",
            "r.yml:5:",
        ),
        (
            "rules:\n  - name: a\n    on: page.created\n    actions:\n"
            "      - replace: {pattern: x}",
            "needs exactly `pattern` and `with`",
        ),
    ],
)
def test_problems(text: str, fragment: str) -> None:
    assert any(fragment in p for p in _errors(text)), _errors(text)


def test_sandbox_blocks_python_internals() -> None:
    text = (
        "rules:\n  - name: a\n    on: page.created\n    actions:\n"
        '      - comment: "{{ ().__class__.__base__.__subclasses__() }}"'
    )
    (problem,) = _errors(text)
    assert problem.startswith("r.yml:5: rules[0] (a).actions[0].comment: template:")
    assert "unsafe" in problem


async def _run(
    rules: str, event: Event, fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    await reactor(compile_rules(rules, "r.yml"))(event, job(event))


async def test_comment_action_escapes_values_and_mentions(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    fake.contents["1001"] = replace(fake.contents["1001"], title="RFC <script>")
    rules = (
        "rules:\n  - name: a\n    on: page.created\n    actions:\n"
        "      - comment: 'Thanks {{ mention(event.actor) }} for {{ page.title }}'"
    )
    await _run(rules, page_event("page_created"), fake, job, reactor)
    (comment,) = fake.comments["1001"]
    assert comment.body == (
        '<p>Thanks <ac:link><ri:user ri:account-id="user-1" /></ac:link> for RFC &lt;script&gt;</p>'
    )


async def test_inline_comment_on_matched_text(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    page = fake.contents["1001"]
    fake.contents["1001"] = replace(page, body="<p>TODO a.</p><p>Then TODO pick a cache.</p>")
    rules = (
        "rules:\n  - name: a\n    on: page.updated\n    actions:\n"
        "      - inline_comment: {match: 'TODO p[^.]*', body: 'Owner of {{ match.text }}?'}"
    )
    event = page_event()
    await _run(rules, event, fake, job, reactor)
    await _run(rules, event, fake, job, reactor)
    assert fake.inline["1001"] == [
        ("<p>Owner of TODO pick a cache?</p>", "TODO pick a cache", 1, 0)
    ]


async def test_page_edits_append_prepend_replace_keep_xml_and_apply_once(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    page = fake.contents["1001"]
    fake.contents["1001"] = replace(
        page, body='<p>See <a href="https://x/JIRA-1">JIRA-12 &amp; JIRA-7</a></p>'
    )
    rules = (RULES / "valid.yml").read_text()
    router = compile_rules(rules, "valid.yml")
    event = page_event()
    react = reactor(router)
    await react(event, job(event))
    await react(event, job(event))
    body = fake.contents["1001"].body
    assert body == (
        "<p>Status: draft</p>"
        '<p>See <a href="https://x/JIRA-1">PROJ-12 &amp; PROJ-7</a></p>'
        "<p><em>Maintained by the platform team.</em></p>"
    )
    assert storage.well_formed(body) is None
    assert len([c for c in fake.writes() if c[0] == "update"]) == 3
    # a later user edit: the fragments are already there, only new ticket ids change
    fake.contents["1001"] = replace(
        fake.contents["1001"], body=body + "<p>JIRA-9</p>", version=9, version_message="",
        author_id="user-1",
    )  # fmt: skip
    later = page_event(version=9)
    await react(later, job(later))
    assert fake.contents["1001"].body.endswith("<p>PROJ-9</p>")
    assert fake.contents["1001"].body.count("Status: draft") == 1


async def test_reply_action_on_comment_events(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    fake.add(
        Content(id="5001", kind="comment", title="", body="<p>nice</p>", version=1,
                author_id="user-1", parent_id="1001", parent_kind="page")
    )  # fmt: skip
    rules = (
        "rules:\n  - name: a\n    on: comment.created\n    actions:\n"
        "      - reply: 'Noted, {{ mention(event.actor) }}.'"
    )
    event = comment_event()
    await _run(rules, event, fake, job, reactor)
    await _run(rules, event, fake, job, reactor)
    assert fake.replied == {
        "5001": ['<p>Noted, <ac:link><ri:user ri:account-id="user-1" /></ac:link>.</p>']
    }


async def test_invalid_template_output_fails_the_action_permanently(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    from app.errors import PermanentFailure

    rules = "rules:\n  - name: a\n    on: page.updated\n    actions:\n      - append: '<p>unclosed'"
    event = page_event()
    with pytest.raises(PermanentFailure, match="invalid storage XML"):
        await _run(rules, event, fake, job, reactor)
    assert fake.writes() == []


def test_example_rules_file_is_valid() -> None:
    router = load_rules(Path(__file__).parents[2] / "examples" / "rules.yml")
    assert len(router) == 7


def test_latest_only_defaults_from_the_builtin_and_can_be_set() -> None:
    router = load_rules(RULES / "valid.yml")
    latest = {r.name: r.latest_only for r in router}
    assert latest["rule:secrets"] and latest["rule:rfc-template"]
    assert not latest["rule:welcome-dev"] and not latest["rule:rfc-thanks"]
    text = (
        "rules:\n  - name: a\n    on: page.updated\n    latest_only: true\n"
        "    actions: [{comment: x}]"
    )
    (reg,) = compile_rules(text, "r.yml")
    assert reg.latest_only


async def test_interrupted_inline_comment_and_reply_are_found_in_place(
    fake: FakeConfluence, job: Job, reactor: MakeReactor, redis: Redis, settings: Settings
) -> None:
    import json

    fake.add(
        Content(id="5001", kind="comment", title="", body="<p>TODO fix</p>", version=1,
                author_id="user-1", parent_id="1001", parent_kind="page")
    )  # fmt: skip
    page = fake.contents["1001"]
    fake.contents["1001"] = replace(page, body="<p>TODO pick a cache.</p>")
    rules = (
        "rules:\n  - name: a\n    on: comment.created\n    actions:\n"
        "      - reply: 'Noted.'\n"
        "      - inline_comment: {match: 'TODO[^.]*', body: 'Owner?'}"
    )
    event = comment_event()
    await _run(rules, event, fake, job, reactor)
    async for key in redis.scan_iter(match=f"{settings.redis_prefix}effect:*"):
        await redis.set(key, json.dumps({"state": "pending"}))  # died before recording
    await _run(rules, event, fake, job, reactor)
    assert fake.replied == {"5001": ["<p>Noted.</p>"]}
    assert len(fake.inline["1001"]) == 1
    assert [c[0] for c in fake.writes()] == ["reply", "inline"]


async def test_attachment_events_act_on_the_page_they_are_attached_to(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    from app.atlassian.events import from_connect

    body = {
        "timestamp": 1764230600000,
        "userAccountId": "user-1",
        "attachments": [{"id": "att7", "fileName": "keys.txt", "contentType": "attachment"}],
        "attachedTo": {"id": 1001, "title": "RFC: caching", "contentType": "page"},
    }
    event = from_connect("tenant-a", "attachment_created", body)
    rules = (
        "rules:\n  - name: a\n    on: attachment.created\n    actions:\n"
        "      - comment: 'New file on {{ page.title }}'"
    )
    await _run(rules, event, fake, job, reactor)
    (comment,) = fake.comments["1001"]
    assert comment.body == "<p>New file on RFC: caching</p>"


def test_reactor_options_follow_the_settings(settings: Settings) -> None:
    from workers.clients import reactor_options

    options = reactor_options(
        settings.model_copy(
            update={
                "dry_run": True,
                "app_account_id": "a1, a2",
                "loop_guard_limit": 3,
                "loop_guard_window_seconds": 60,
            }
        )
    )
    assert options.dry_run and options.app_accounts == {"a1", "a2"}
    assert (options.loop_guard.limit, options.loop_guard.window_seconds) == (3, 60)


async def test_label_event_on_a_page_last_edited_by_the_app_still_runs(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    from app.atlassian.events import from_connect
    from app.confluence.pages import edit_message

    page = fake.contents["1001"]
    fake.contents["1001"] = replace(page, version_message=edit_message("redacted"), version=5)
    body = {
        "timestamp": 1764230700000,
        "userAccountId": "user-1",
        "label": {"name": "rfc", "prefix": "global"},
        "labeled": {"id": 1001, "spaceKey": "DEV", "title": "RFC: caching", "contentType": "page"},
    }
    event = from_connect("tenant-a", "label_added", body)
    rules = (
        "rules:\n  - name: a\n    on: label.added\n    when: {label: rfc}\n    actions:\n"
        "      - comment: 'Labelled {{ event.label }}'"
    )
    await _run(rules, event, fake, job, reactor)
    assert [c.body for c in fake.comments["1001"]] == ["<p>Labelled rfc</p>"]
