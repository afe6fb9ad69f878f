"""Reading the rules file's YAML nodes with line numbers: typed values or a recorded problem.

Every reader returns the value, or None after recording ``<file>:<line>: <where>: <what>``, so
one pass over the file reports every problem at once. Pure: text in, values and problems out.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from workers import rule_actions


class Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, node: yaml.Node, where: str, message: str, line_offset: int = 0) -> None:
        line = node.start_mark.line + 1 + line_offset
        self.lines.append(f"{self.source}:{line}: {where}: {message}")


class NodeReader:
    """Typed reads of YAML nodes; problems collect in ``self.problems``."""

    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        self.problems = Problems(source)
        self.loader = loader
        self.env: SandboxedEnvironment = rule_actions.environment()

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
        if isinstance(node, yaml.ScalarNode) and isinstance(self.plain(node), str):
            return str(node.value)
        self.problems.add(node, where, "must be text")
        return None

    def strings(self, node: yaml.Node, where: str) -> list[str] | None:
        if isinstance(node, yaml.ScalarNode):
            return [str(node.value)]
        if isinstance(node, yaml.SequenceNode) and all(
            isinstance(n, yaml.ScalarNode) for n in node.value
        ):
            return [str(n.value) for n in node.value]
        self.problems.add(node, where, "must be text or a list of texts")
        return None

    def regex(self, node: yaml.Node, where: str) -> re.Pattern[str] | None:
        text = self.string(node, where)
        if text is None:
            return None
        try:
            return re.compile(text)
        except re.error as exc:
            self.problems.add(node, where, f"invalid regular expression: {exc}")
            return None

    def template(self, node: yaml.Node, where: str) -> Template | None:
        text = self.string(node, where)
        if text is None:
            return None
        # block scalars (| and >) start on the line after their indicator
        offset = 1 if getattr(node, "style", None) in ("|", ">") else 0
        try:
            template = self.env.from_string(text)
            template.render(rule_actions.sample_context())
        except TemplateError as exc:
            lineno = getattr(exc, "lineno", None) or _line_of_name(text, exc.message or "")
            self.problems.add(node, where, f"template: {exc.message}", offset + lineno - 1)
            return None
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


def _line_of_name(text: str, message: str) -> int:
    """1-based line of the first name quoted in a runtime template error, else 1."""
    names = re.findall(r"'(\w+)'", message)
    for number, line in enumerate(text.splitlines(), start=1):
        if names and re.search(rf"\b{re.escape(names[-1])}\b", line):
            return number
    return 1
