"""Reading the rules file's YAML nodes with line numbers: typed values or a recorded problem.

Every reader returns the value, or None after recording ``<file>:<line>: <where>: <what>``, so
one pass over the file reports every problem at once. Pure: text in, values and problems out.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

import yaml
from jinja2 import Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from app.atlassian.events import Event
from app.errors import PermanentFailure
from workers import regex_risk, rule_actions, storage
from workers.ops import Content
from workers.routing import REGEX_ERRORS


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, node: yaml.Node, where: str, message: str, line_offset: int = 0) -> None:
        self.at(node.start_mark.line + 1 + line_offset, where, message)

    def at(self, line: int, where: str, message: str) -> None:
        self.lines.append(f"{self.source}:{line}: {where}: {message}")


# The most a rule's template may render: comments and page fragments are far smaller.
MAX_RENDERED = 1_000_000


class RuleTemplate(Template):
    """A rule's template: any error while rendering fails the action permanently.

    A template that fails for one event fails the same way on every retry, so retrying only
    delays the dead letter; the message names the file, line and action like start-up problems.
    """

    where = "template"  # "rules.yml:12: rules[0] (a).actions[0].comment", set when compiled

    def render(self, *args: Any, **kwargs: Any) -> str:
        try:
            return self.render_unguarded(*args, **kwargs)
        except Exception as exc:
            raise PermanentFailure(f"{self.where}: template: {describe(exc)}") from exc

    def render_unguarded(self, *args: Any, **kwargs: Any) -> str:
        """The rendered text, refused once it passes ``MAX_RENDERED`` characters (a loop can
        build far more than any comment or page fragment needs), or once its loops take more
        than ``rule_actions.MAX_LOOP_STEPS`` steps (loops that write nothing)."""

        def render() -> str:
            parts: list[str] = []
            size = 0
            for chunk in self.generate(*args, **kwargs):
                size += len(chunk)
                if size > MAX_RENDERED:
                    raise SecurityError(f"the template renders more than {MAX_RENDERED} characters")
                parts.append(chunk)
            return "".join(parts)

        result: str = rule_actions.budgeted(render)
        return result


def describe(exc: BaseException) -> str:
    """A template error as one line: jinja2's own message, else the Python exception's."""
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def stand_ins(match: re.Pattern[str] | None = None) -> dict[str, Any]:
    """The variables run time gives a template, with stand-in values (checked at start-up).

    Built by the functions run time uses, so the names are exactly the same; ``match`` only for
    the templates that see one (``inline_comment`` body, ``replace`` with), with as many groups
    and the same group names as the action's pattern.
    """
    event = Event(
        id="sample", source="connect", tenant="sample", type="page.updated",
        content_id="sample", content_type="page", timestamp=0, version=1,
        space_key="sample", space_id="sample", actor="sample", title="sample", label="sample",
    )  # fmt: skip
    page = Content(
        id="sample", kind="page", title="sample", body="", version=1,
        author_id="sample", parent_id="sample", space_id="sample",
    )  # fmt: skip
    variables = {
        "event": rule_actions.event_vars(event),
        "page": rule_actions.content_vars(page),
        "content": rule_actions.content_vars(page),
    }
    if match is not None:
        variables["match"] = {
            "text": "sample",
            "groups": ("sample",) * match.groups,
            "named": dict.fromkeys(match.groupindex, "sample"),
        }
    return variables


class NodeReader:
    """Typed reads of YAML nodes; problems collect in ``self.problems``."""

    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        self.problems = Problems(source)
        self.loader = loader
        self.env: SandboxedEnvironment = rule_actions.environment()
        self.env.template_class = RuleTemplate

    def mapping(self, node: yaml.Node, where: str) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problems.add(node, where, "must be a mapping")
            return None
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = str(key.value)
            if name in out:
                self.problems.add(key, where, f"duplicate key {name!r}")
            out[name] = value
        return out

    def plain(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def string(self, node: yaml.Node, where: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or not isinstance(self.plain(node), str):
            self.problems.add(node, where, "must be text")
            return None
        if not str(node.value).strip():
            self.problems.add(node, where, "must not be empty")
            return None
        return str(node.value)

    def strings(self, node: yaml.Node, where: str, unquoted: bool = False) -> list[str] | None:
        """Text or a non-empty list of texts, none empty. ``unquoted``: numbers and dates count
        as the text written (space ids, labels such as 2024); otherwise they are refused."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        expected = "text or a list of texts"
        if isinstance(node, yaml.SequenceNode) and not items:
            self.problems.add(node, where, f"must be {expected}, not an empty list")
            return None
        out: list[str] = []
        for item in items:
            value = self.plain(item) if isinstance(item, yaml.ScalarNode) else None
            scalar = value is not None and not isinstance(value, bool)
            if not isinstance(value, str) and not (unquoted and scalar):
                self.problems.add(item, where, f"must be {expected}, not {_shown(item)}")
                return None
            if not str(item.value).strip():
                self.problems.add(item, where, "must not be empty")
                return None
            out.append(str(item.value))
        return out

    def regex(self, node: yaml.Node, where: str) -> re.Pattern[str] | None:
        text = self.string(node, where)
        if text is None:
            return None
        try:
            pattern = re.compile(text)
            risky = regex_risk.backtracks(pattern)
        except REGEX_ERRORS as exc:
            self.problems.add(node, where, f"invalid regular expression: {exc}")
            return None
        if risky:
            self.problems.add(node, where, f"regular expression refused: {regex_risk.PROBLEM}")
            return None
        return pattern

    def template(
        self,
        node: yaml.Node,
        where: str,
        *,
        match: re.Pattern[str] | None = None,
        fragment: bool = True,
        allow_empty: bool = False,
    ) -> RuleTemplate | None:
        """Compile a template and render it once with :func:`stand_ins`: any error (unknown
        variable, a call that fails, an operation on the wrong type) is a problem at its line,
        as is a ``fragment`` that is not well-formed storage XML (checked like run time does).
        """
        empty = allow_empty and isinstance(node, yaml.ScalarNode) and self.plain(node) == ""
        text = "" if empty else self.string(node, where)
        if text is None:
            return None
        # block scalars (| and >) start on the line after their indicator
        offset = 1 if getattr(node, "style", None) in ("|", ">") else 0
        try:
            template = self.env.from_string(text)
        except Exception as exc:  # a syntax error, or the compiler's own (too deeply nested)
            line = _template_line(exc, text)
            self.problems.add(node, where, f"template: {describe(exc)}", offset + line - 1)
            return None
        assert isinstance(template, RuleTemplate)  # the environment's template class
        try:
            rendered = template.render_unguarded(stand_ins(match))
        except Exception as exc:  # whatever the template raises is this rule's problem
            line = _template_line(exc, text)
            self.problems.add(node, where, f"template: {describe(exc)}", offset + line - 1)
            return None
        if fragment:
            problem = storage.well_formed(rule_actions.as_storage(rendered))
            if problem is not None:  # its column counts from a wrapper element: left out
                problem = re.sub(r": line \d+, column \d+$", "", problem)
                self.problems.add(node, where, f"template: renders invalid storage XML ({problem})")
                return None
        template.where = f"{self.problems.source}:{node.start_mark.line + 1}: {where}"
        return template

    # rules -------------------------------------------------------------------------------

    def flag(self, node: yaml.Node | None, where: str) -> bool | None:
        if node is None:
            return None
        value = self.plain(node)
        if not isinstance(value, bool):
            self.problems.add(node, where, "must be true or false")
            return None
        return value


def _shown(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value) if node.tag.endswith(":str") else str(node.value or "null")
    return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


def _template_line(exc: BaseException, text: str) -> int:
    """1-based template line of an error: the syntax error's, else the template frame's."""
    if isinstance(exc, TemplateSyntaxError) and exc.lineno:
        return exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    if frames and frames[-1].lineno:
        return frames[-1].lineno
    return _line_of_name(text, describe(exc))


def _line_of_name(text: str, message: str) -> int:
    """1-based line of the first name quoted in a runtime template error, else 1."""
    names = re.findall(r"'(\w+)'", message)
    for number, line in enumerate(text.splitlines(), start=1):
        if names and re.search(rf"\b{re.escape(names[-1])}\b", line):
            return number
    return 1
