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
from workers import rule_actions, storage
from workers.dispatch import JobContext
from workers.ops import Content
from workers.reactor import Reactor
from workers.routing import Filters
from workers.rules import compile_rules, load_rules
from workers.rules_yaml import RuleTemplate

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
    (problem,) = _errors("version: 1\nrules:\n  - name: a\n    on: [page.created\n")
    assert problem.startswith("r.yml:5: not valid YAML")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\nrules: {}", "r.yml:2: rules: must be a list"),
        ("version: 2\nrules: []", "r.yml:1: version: only version 1"),
        (
            "version: 1\nrules:\n  - on: page.created\n    actions: [{comment: x}]",
            "every rule needs a name",
        ),
        ("version: 1\nrules:\n  - name: a\n    on: page.created", "either `reaction:`"),
        (
            "version: 1\nrules:\n  - name: a\n    reaction: secrets\n    options: {allow: ['(']}",
            "r.yml:5:",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    reaction: secrets\n    colour: red",
            "r.yml:5: rules[0].colour: unknown key",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: page.created\n    actions:\n      - comment: "
            "\"{{ ''.__class__.__mro__ }}\"",
            "r.yml:6:",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: page.created\n    actions:\n"
            "      - replace: {pattern: x}",
            "needs exactly `pattern` and `with`",
        ),
    ],
)
def test_problems(text: str, fragment: str) -> None:
    assert any(fragment in p for p in _errors(text)), _errors(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.updated, page.trashed]\n"
            "    actions: [{comment: x}]",
            "r.yml:4: rules[0] (a).on: page.trashed: the content is gone by then",
        ),
        (
            "version: 1\nrules:\n  - name: w\n    reaction: welcome\n    on: [comment.deleted]",
            "r.yml:5: rules[0] (w).on: comment.deleted: the content is gone by then",
        ),
        (
            "version: 1\nrules:\n  - name: s\n    reaction: secrets\n"
            "    options: {min_entropy: true}",
            "option 'min_entropy': must be a number",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n    actions: [{comment: x}]\n"
            "    options: " + "[" * 3000 + "]" * 3000,
            "r.yml: nested too deeply",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
            "    actions: [{comment: \"{{ 'x' * 10**9 }}\"}]",
            "template: '*' would build more than 100000 items",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
            '    actions: [{comment: "{{ 2 ** 1000 }}"}]',
            "template: '**' takes exponents up to 64",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
            '    actions: [{comment: "{{ 10 ** 60 ** 60 ** 60 }}"}]',
            "template: '**' makes numbers up to 4096 bits",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
            "    actions: [{comment: \"{% for i in range(90000) %}{{ 'x' * 90000 }}"
            '{% endfor %}"}]',
            "template: the template renders more than 1000000 characters",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
            '    actions: [{comment: "{% for i in range(100000) %}{% for j in range(100000) %}'
            '{% endfor %}{% endfor %}done"}]',
            "r.yml:5: rules[0] (a).actions[0].comment: template: too much work: loops ran more",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
            '    actions: [{comment: "{% for i in [range(100000)] * 100 recursive %}'
            "{{ loop(i) if i is iterable else '' }}{% endfor %}done\"}]",
            "template: too much work: loops ran more than 1000000 steps",
        ),
    ],
)
def test_what_could_only_fail_at_run_time_is_refused_at_load(text: str, fragment: str) -> None:
    """Rules on removals would read content that is gone; a boolean is no entropy; a file
    nested beyond the parser's depth is a clear problem, not a traceback."""
    assert any(fragment in p for p in _errors(text)), _errors(text)


def test_loops_still_loop_within_the_budget() -> None:
    loops = (
        "{% for i in range(3) %}{{ loop.index }}/{{ loop.length }}{% if loop.last %}!{% endif %}"
        "{% else %}none{% endfor %}{% for x in [] %}x{% else %} none{% endfor %}"
    )
    router = compile_rules(RULE + f'      - comment: "{loops}"', "r.yml")
    assert [r.name for r in router] == ["rule:a"]
    env = rule_actions.environment()
    env.template_class = RuleTemplate
    template = env.from_string(loops)
    assert isinstance(template, RuleTemplate)
    assert template.render() == "1/32/33/3! none"
    # each render has a budget of its own
    many = env.from_string(
        "{% for i in range(6) %}{% for j in range(100000) %}{% endfor %}{% endfor %}ok"
    )
    assert isinstance(many, RuleTemplate)
    assert many.render() == many.render() == "ok"


def test_templates_still_multiply_and_raise_to_small_powers() -> None:
    compile_rules(
        "version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
        "    actions: [{comment: \"{{ '-' * 20 }} {{ 2 ** 10 * 3 }} {{ [1] * 3 }}\"}]",
        "r.yml",
    )
    widths = (
        "{{ 'a'|center(10) }} {{ '%5d' % 3 }} {{ 'x'.ljust(5) }} {{ '{:>4}'.format(1) }}"
        " {{ 'ab'.replace('a', 'c') }} {{ '%3s'|format('x') }} {{ 'a b'|wordwrap(20) }}"
    )
    rule = "version: 1\nrules:\n  - name: a\n    on: [page.created]\n    actions: [{comment: "
    compile_rules(rule + f'"{widths}"' + "}]", "r.yml")


@pytest.mark.parametrize(
    ("template", "refusal"),
    [
        ("{{ 'x'|center(50000000) }}", "'center' takes widths up to 100000"),
        ("{{ '%050000000d' % 1 }}", "'%' takes widths up to 100000"),
        ("{{ '%050000000d'|format(1) }}", "'format' takes widths up to 100000"),
        ("{{ 'x'.ljust(50000000) }}", "'ljust' takes widths up to 100000"),
        ("{{ '{:>50000000}'.format(1) }}", "'format' takes widths up to 100000"),
        (
            "{% set s = 'x' * 1000 %}{{ s.replace('x', s).replace('x', s) }}",
            "'replace' would build more than 1000000",
        ),
    ],
)
def test_a_template_cannot_build_a_huge_string_in_one_step(template: str, refusal: str) -> None:
    """Each of these would allocate its whole result before the render limit could see it."""
    rule = "version: 1\nrules:\n  - name: a\n    on: [page.created]\n    actions: [{comment: "
    (problem,) = _errors(rule + f'"{template}"' + "}]")
    assert refusal in problem, problem


async def test_a_wildcard_rule_leaves_removal_events_alone(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    rules = "version: 1\nrules:\n  - name: a\n    on: ['page.*']\n    actions: [{comment: x}]"
    compiled = reactor(compile_rules(rules, "r.yml"))
    trashed = page_event("page_trashed")
    await compiled(trashed, job(trashed))
    assert fake.comments.get("1001", []) == [], "the trashed page is not read nor written"
    updated = page_event("page_updated")
    await compiled(updated, job(updated))
    assert len(fake.comments["1001"]) == 1


def test_sandbox_blocks_python_internals() -> None:
    text = (
        "version: 1\nrules:\n  - name: a\n    on: page.created\n    actions:\n"
        '      - comment: "{{ ().__class__.__base__.__subclasses__() }}"'
    )
    (problem,) = _errors(text)
    assert problem.startswith("r.yml:6: rules[0] (a).actions[0].comment: template:")
    assert "unsafe" in problem


RULE = "version: 1\nrules:\n  - name: a\n    on: page.created\n    actions:\n"  # action: line 6


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            RULE + "      - comment: hi\n    when: {title: 'a{99999999999}'}",
            "r.yml:7: rules[0] (a).when.title: invalid regular expression: ",
        ),
        (
            RULE + "      - inline_comment: {match: 'x{4294967296}', body: hi}",
            "r.yml:6: rules[0] (a).actions[0].inline_comment.match: invalid regular expression: ",
        ),
        (
            RULE + "      - replace: {pattern: 'y{4294967296}', with: z}",
            "r.yml:6: rules[0] (a).actions[0].replace.pattern: invalid regular expression: ",
        ),
        (
            "version: 1\nrules:\n  - name: s\n    reaction: secrets\n"
            "    options: {allow: ['x{4294967296}']}",
            "r.yml:5: rules[0] (s).options: option 'allow': invalid regular expression: ",
        ),
    ],
)
def test_a_repeat_count_too_large_is_a_problem_at_its_line(text: str, problem: str) -> None:
    problems = _errors(text)
    assert len(problems) == 1 and problems[0].startswith(problem), problems
    assert "too large" in problems[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (RULE + '      - comment: "a\\ud800b"', "r.yml:6: text: \\ud800 is a lone surrogate"),
        (RULE.replace("name: a", 'name: "caf\\ud800"') + "      - comment: hi", "r.yml:3: text: "),
        (
            RULE + '      - replace: {pattern: x, with: "\\udfff"}',
            "r.yml:6: text: \\udfff is a lone surrogate",
        ),
        (RULE + '      - comment: hi\n    options: {"\\ud800": 1}', "r.yml:7: text: "),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_problem_at_its_line(text: str, problem: str) -> None:
    problems = _errors(text)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_a_character_beyond_the_basic_plane_is_written_as_itself_or_its_long_escape() -> None:
    assert "\\ud83d is a lone surrogate" in _errors(RULE + '      - comment: "\\ud83d\\ude00"')[0]
    router = compile_rules(RULE + '      - comment: "\\U0001F600 \U0001f600"', "r.yml")
    assert [r.name for r in router] == ["rule:a"]


def test_a_decorators_title_with_a_repeat_count_too_large_is_refused() -> None:
    with pytest.raises(ValueError, match="title: invalid regular expression"):
        Filters.build(title="a{99999999999}")


@pytest.mark.parametrize(
    ("template", "line", "message"),
    [
        ('"{{ mention() }}"', 6, "TypeError: _mention() missing 1 required positional argument"),
        ('"{{ 1/0 }}"', 6, "ZeroDivisionError: division by zero"),
        ("'{{ page.version + \"x\" }}'", 6, "TypeError: unsupported operand type(s) for +"),
        ("|\n          Hello\n          {{ 1/0 }}", 8, "ZeroDivisionError"),
    ],
)
def test_any_error_of_a_template_at_start_up_is_a_problem_at_its_line(
    template: str, line: int, message: str
) -> None:
    (problem,) = _errors(RULE + f"      - comment: {template}")
    assert problem.startswith(f"r.yml:{line}: rules[0] (a).actions[0].comment: template: ")
    assert message in problem


def test_match_is_offered_only_where_run_time_gives_it() -> None:
    (problem,) = _errors(RULE + '      - comment: "{{ match.text }}"')
    assert problem == "r.yml:6: rules[0] (a).actions[0].comment: template: 'match' is undefined"
    # the pattern's own groups: as many, and the same names, as run time gives
    (problem,) = _errors(
        RULE + "      - replace: {pattern: 'JIRA-(\\d+)', with: '{{ match.groups[1] }}'}"
    )
    assert problem.startswith("r.yml:6: rules[0] (a).actions[0].replace.with: template: ")
    (problem,) = _errors(
        RULE + "      - inline_comment: {match: '(?P<who>@\\w+)', body: '{{ match.named.what }}'}"
    )
    assert "has no attribute 'what'" in problem
    compile_rules(
        RULE
        + "      - replace: {pattern: 'JIRA-(\\d+)', with: 'PROJ-{{ match.groups[0] }}'}\n"
        + "      - inline_comment: {match: '(?P<who>@\\w+)', body: '{{ match.named.who }}'}\n"
        + "      - replace: {pattern: 'DRAFT ', with: ''}",
        "r.yml",
    )


async def test_a_template_error_at_run_time_fails_the_action_permanently(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    from app.errors import PermanentFailure
    from workers.retry import decide

    rules = RULE.replace("page.created", "page.updated") + (
        "      - comment: '{{ event.label.upper() }}'"  # page events have no label: None
    )
    event = page_event()
    with pytest.raises(PermanentFailure) as info:
        await _run(rules, event, fake, job, reactor)
    assert str(info.value).startswith(
        "r.yml:6: rules[0] (a).actions[0].comment: template: 'None' has no attribute 'upper'"
    )
    assert decide(info.value, 0, (60.0, 600.0), 0.0).action == "dead"  # not retried
    assert fake.writes() == []


@pytest.mark.parametrize("on", ['"comment.*"', "comment.deleted", "[comment.created, '*']"])
def test_a_reply_needs_comment_created_or_updated_events(on: str) -> None:
    text = f"version: 1\nrules:\n  - name: a\n    on: {on}\n    actions: [{{reply: hi}}]"
    expected = (
        "r.yml:4: rules[0] (a).on: a reply action needs comment events only "
        "(comment.created, comment.updated), not "
    )
    assert any(p.startswith(expected) for p in _errors(text)), _errors(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "r.yml:1: rules file: empty: it defines no rules"),
        ("# all rules commented out\n", "r.yml:1: rules file: empty: it defines no rules"),
        ("version: 1\nrules: []", "r.yml:2: rules: empty: the file defines no rules"),
        ("version: 1", "r.yml:1: rules: missing: the file defines no rules"),
        (RULE[11:] + "      - comment: hi", "r.yml:1: version: missing: "),
        ("version: true\n" + RULE[11:] + "      - comment: hi", "r.yml:1: version: only version 1"),
        (RULE.replace("name: a", 'name: ""') + "      - comment: hi", "r.yml:3: rules[0].name: "),
        (RULE + "      - comment: ''", "r.yml:6: rules[0] (a).actions[0].comment: must not be"),
        (RULE.replace("on: page.created", "on: []") + "      - comment: hi", "r.yml:4: "),
        (RULE + "      - comment: hi\n    when: {label: ''}", "r.yml:7: rules[0] (a).when.label"),
        (
            RULE + "      - comment: hi\n    when: {author: [5]}",
            "r.yml:7: rules[0] (a).when.author",
        ),
        (RULE + "      - comment: hi\n    space: ''", "r.yml:7: rules[0] (a).space: "),
        (RULE + "      - comment: hi\n    tenant: []", "r.yml:7: rules[0] (a).tenant: "),
        (RULE + "      - comment: hi\n    tenant: [a, null]", "r.yml:7: rules[0] (a).tenant: "),
        ("version: 1\nrules:\n  - name: a\x07", "r.yml:3: not valid YAML: unacceptable character"),
        ("version: 1\nrules:\n  - name: !!python/name:os.system", "r.yml:3: not valid YAML: "),
    ],
)
def test_empty_missing_and_ill_typed_values_are_refused(text: str, problem: str) -> None:
    problems = _errors(text)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_numbers_are_text_for_space_ids_and_labels_but_not_for_accounts() -> None:
    text = RULE + "      - comment: hi\n    space: [DEV, 12345]\n    when: {label: 2024}"
    (reg,) = compile_rules(text, "r.yml")
    assert reg.filters.spaces == {"DEV", "12345"} and reg.filters.labels == {"2024"}
    (problem,) = _errors(RULE + "      - comment: hi\n    when: {author: [5]}")
    assert problem == ("r.yml:7: rules[0] (a).when.author: must be text or a list of texts, not 5")


def test_a_rules_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_bytes("version: 1\nrules:\n  - name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert info.value.problems == [
        f"{path}:3: not UTF-8 text (byte 0xe9): save the rules file as UTF-8"
    ]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (
            "- commment: hi",
            "unknown action 'commment' (did you mean 'comment'?); an action is one of: comment,",
        ),
        (
            "- {comment: hi, append: '<p>x</p>'}",
            "an action has exactly one key, not 2 (comment, append)",
        ),
        ("- {}", "an action needs a key, one of: comment,"),
    ],
)
def test_a_bad_action_names_its_keys(action: str, message: str) -> None:
    (problem,) = _errors(RULE + f"      {action}")
    assert problem.startswith(f"r.yml:6: rules[0] (a).actions[0]: {message}"), problem


async def _run(
    rules: str, event: Event, fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    await reactor(compile_rules(rules, "r.yml"))(event, job(event))


async def test_comment_action_escapes_values_and_mentions(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    fake.contents["1001"] = replace(fake.contents["1001"], title="RFC <script>")
    rules = (
        "version: 1\nrules:\n  - name: a\n    on: page.created\n    actions:\n"
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
        "version: 1\nrules:\n  - name: a\n    on: page.updated\n    actions:\n"
        "      - inline_comment: {match: 'TODO p[^.]*', body: 'Owner of {{ match.text }}?'}"
    )
    event = page_event()
    await _run(rules, event, fake, job, reactor)
    await _run(rules, event, fake, job, reactor)
    assert fake.inline["1001"] == [
        ("<p>Owner of TODO pick a cache?</p>", "TODO pick a cache", 1, 0)
    ]


async def test_inline_comment_skips_text_that_cannot_be_selected(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    """A match in a code body comes first, but a selection can only be page text: the comment
    goes on the paragraph's TODO, counted as Confluence counts (one selectable occurrence)."""
    page = fake.contents["1001"]
    fake.contents["1001"] = replace(
        page,
        body='<ac:structured-macro ac:name="code"><ac:plain-text-body><![CDATA[# TODO x]]>'
        "</ac:plain-text-body></ac:structured-macro><p>TODO x</p>",
    )
    rules = (
        "version: 1\nrules:\n  - name: a\n    on: page.updated\n    actions:\n"
        "      - inline_comment: {match: 'TODO x', body: 'Owner?'}"
    )
    await _run(rules, page_event(), fake, job, reactor)
    assert fake.inline["1001"] == [("<p>Owner?</p>", "TODO x", 1, 0)]


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
        "version: 1\nrules:\n  - name: a\n    on: comment.created\n    actions:\n"
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

    fake.contents["1001"] = replace(fake.contents["1001"], title="<b>RFC")
    rules = (
        "version: 1\nrules:\n  - name: a\n    on: page.updated\n    actions:\n"
        "      - append: '{{ page.title|safe }}'"
    )
    event = page_event()
    with pytest.raises(PermanentFailure, match="invalid storage XML"):
        await _run(rules, event, fake, job, reactor)
    assert fake.writes() == []


def test_a_fixed_template_that_is_not_well_formed_is_refused_at_start_up() -> None:
    text = "version: 1\nrules:\n  - name: a\n    on: page.updated\n    actions:\n"
    (problem,) = _errors(text + "      - append: '<p>unclosed'")
    assert problem.startswith("r.yml:6: rules[0] (a).actions[0].append: template: ")
    assert "renders invalid storage XML" in problem
    (problem,) = _errors(text + "      - inline_comment: {match: x, body: '<p>{{ match.text }}'}")
    assert problem.startswith("r.yml:6: rules[0] (a).actions[0].inline_comment.body: ")
    compile_rules(text + "      - replace: {pattern: '&', with: '<and>'}", "r.yml")  # text


def test_example_rules_file_is_valid() -> None:
    router = load_rules(Path(__file__).parents[2] / "examples" / "rules.yml")
    assert len(router) == 7


def test_latest_only_defaults_from_the_builtin_and_can_be_set() -> None:
    router = load_rules(RULES / "valid.yml")
    latest = {r.name: r.latest_only for r in router}
    assert latest["rule:secrets"] and latest["rule:rfc-template"]
    assert not latest["rule:welcome-dev"] and not latest["rule:rfc-thanks"]
    text = (
        "version: 1\nrules:\n  - name: a\n    on: page.updated\n    latest_only: true\n"
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
        "version: 1\nrules:\n  - name: a\n    on: comment.created\n    actions:\n"
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
        "version: 1\nrules:\n  - name: a\n    on: attachment.created\n    actions:\n"
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
        "version: 1\nrules:\n  - name: a\n    on: label.added\n    when: {label: rfc}\n"
        "    actions:\n"
        "      - comment: 'Labelled {{ event.label }}'"
    )
    await _run(rules, event, fake, job, reactor)
    assert [c.body for c in fake.comments["1001"]] == ["<p>Labelled rfc</p>"]
