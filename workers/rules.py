"""The declarative rules file (YAML), validated at start-up with line-numbered errors.

::

    version: 1
    rules:
      - name: welcome-dev                  # unique
        on: [page.created]                 # event types (a built-in reaction has defaults)
        tenant: ...                        # optional filters: tenant, space
        space: [DEV, OPS]
        when:                              # optional conditions
          title: "^RFC"                    #   regular expression on the title
          label: rfc                       #   label present (any of a list)
          author: "557058:..."             #   actor account id (any of a list)
          content_type: page               #   page, blogpost, comment
        dry_run: false                     # record instead of writing (default: global)
        latest_only: false                 # only the latest state matters: older queued events
                                           # of the same page may be skipped
        reaction: welcome                  # a built-in reaction with ``options: {...}`` ...
        actions:                           # ... or actions with sandboxed Jinja2 templates
          - comment: "Thanks {{ mention(event.actor) }}!"
          - reply: "..."                   #   comment events only
          - inline_comment: {match: "TODO", body: "..."}
          - append: "<p>...</p>"
          - prepend: "<p>...</p>"
          - replace: {pattern: "...", with: "..."}

``version: 1`` and at least one rule are required; values are never empty, and text where
text is meant. Every template is rendered at start-up with stand-ins for exactly the variables
run time gives it (:func:`workers.rules_yaml.stand_ins`); any error is a problem, and at run
time a failing template fails its action permanently (:class:`workers.rules_yaml.RuleTemplate`).
Every problem is reported at once as ``<file>:<line>: <where>: <what>`` in a ConfigError.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from app.atlassian.events import REMOVALS, Event
from app.errors import ConfigError
from workers import rule_actions
from workers.context import ReactionContext
from workers.reactions import Builtin, OptionError, secrets, template_guard, welcome
from workers.routing import Filters, Handler, Registration, Router, check_event_pattern
from workers.rules_yaml import NodeReader

BUILTINS: dict[str, Builtin] = {
    b.name: b for b in (welcome.BUILTIN, secrets.BUILTIN, template_guard.BUILTIN)
}
RULE_KEYS = {
    "name", "on", "tenant", "space", "when", "dry_run", "latest_only", "reaction", "options",
    "actions",
}  # fmt: skip
WHEN_KEYS = {"title", "label", "author", "content_type"}
CONTENT_TYPES = {"page", "blogpost", "comment", "attachment"}
REPLY_EVENTS = ("comment.created", "comment.updated")  # a deleted comment takes no reply
NO_RULES_HINT = "unset REACTOR_RULES_FILE to run without a rules file"


class _Compiler(NodeReader):
    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        super().__init__(source, loader)
        self.names: set[str] = set()

    def compile(self, root: yaml.Node | None) -> Router:
        router = Router()
        if root is None:
            self.problems.at(1, "rules file", f"empty: it defines no rules ({NO_RULES_HINT})")
            return router
        if not self.encodable(root):
            return router  # such text cannot be written anywhere: nothing else is checked
        rules = self.top(root)
        if rules is None:
            return router
        for index, node in enumerate(rules.value):
            registration = self.rule(node, f"rules[{index}]")
            if registration is None:
                continue
            try:
                router.add(registration)
            except (TypeError, ValueError) as exc:  # the router's own checks, as a problem
                self.problems.add(node, f"rules[{index}]", str(exc))
        return router

    def encodable(self, root: yaml.Node) -> bool:
        """Whether every text in the file is text: YAML's ``"\\ud800"`` escapes give lone
        surrogates, which no page, comment, log line or key can hold (each a problem)."""
        seen: set[int] = set()
        todo = [root]
        fine = True
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                todo.extend(n for pair in node.value for n in pair)
            elif isinstance(node, yaml.SequenceNode):
                todo.extend(node.value)
            elif isinstance(node.value, str):
                try:
                    node.value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    bad = node.value[exc.start]
                    self.problems.add(
                        node,
                        "text",
                        f"{ascii(bad)[1:-1]} is a lone surrogate, not a character "
                        "(write the character itself, or its \\U escape, as in \\U0001F600)",
                    )
                    fine = False
        return fine

    def top(self, root: yaml.Node) -> yaml.SequenceNode | None:
        """Check ``version`` and the other top-level keys; the ``rules`` list if there is one."""
        top = self.mapping(root, "rules file")
        if top is None:
            return None
        for key, node in top.items():
            if key == "version":
                version = self.plain(node)
                if type(version) is not int or version != 1:
                    self.problems.add(node, "version", "only version 1 is supported")
            elif key != "rules":
                self.problems.add(node, key, "unknown key (expected: version, rules)")
        if "version" not in top:
            self.problems.add(root, "version", "missing: the file must start with `version: 1`")
        rules = top.get("rules")
        if rules is None:
            self.problems.add(
                root, "rules", f"missing: the file defines no rules ({NO_RULES_HINT})"
            )
            return None
        if not isinstance(rules, yaml.SequenceNode):
            self.problems.add(rules, "rules", "must be a list of rules")
            return None
        if not rules.value:
            self.problems.add(rules, "rules", f"empty: the file defines no rules ({NO_RULES_HINT})")
        return rules

    def rule(self, node: yaml.Node, where: str) -> Registration | None:
        fields = self.mapping(node, where)
        if fields is None:
            return None
        for key, value in fields.items():
            if key not in RULE_KEYS:
                self.problems.add(
                    value,
                    f"{where}.{key}",
                    f"unknown key (expected one of: {', '.join(sorted(RULE_KEYS))})",
                )
        before = len(self.problems.lines)
        name = self.string(fields["name"], f"{where}.name") if "name" in fields else None
        if "name" not in fields:
            self.problems.add(node, where, "every rule needs a name")
        elif name is not None:
            if name in self.names:
                self.problems.add(fields["name"], f"{where}.name", f"duplicate rule name {name!r}")
            self.names.add(name)
            where = f"{where} ({name})"
        filters = self.filters(fields, where)
        dry_run = self.flag(fields.get("dry_run"), f"{where}.dry_run")
        latest = self.flag(fields.get("latest_only"), f"{where}.latest_only")
        handler, default_events, options = self.behaviour(node, fields, where)
        builtin = BUILTINS.get(str(getattr(fields.get("reaction"), "value", "")))
        builtin_latest = builtin.latest_only if builtin is not None else False
        events = self.events(fields.get("on"), default_events, node, where, "reaction" in fields)
        removals = [e for e in events if e in REMOVALS]
        if removals:
            self.problems.add(
                fields.get("on", node),
                f"{where}.on",
                f"{', '.join(removals)}: the content is gone by then, and a rule's actions "
                "read or write it; react to removals in code (a wildcard such as page.* "
                "leaves them out)",
            )
        replies = "reply" in self.action_kinds(fields)
        others = [e for e in events if e not in REPLY_EVENTS]
        if replies and others:
            self.problems.add(
                fields.get("on", node),
                f"{where}.on",
                f"a reply action needs comment events only ({', '.join(REPLY_EVENTS)}), "
                f"not {', '.join(others)}",
            )
        if len(self.problems.lines) > before or handler is None or name is None:
            return None
        if latest is None:
            latest = builtin_latest
        guarded = _not_on_removals(handler)
        return Registration(f"rule:{name}", events, filters, guarded, dry_run, options, latest)

    def events(
        self,
        node: yaml.Node | None,
        default: tuple[str, ...],
        rule: yaml.Node,
        where: str,
        reaction: bool = False,
    ) -> tuple[str, ...]:
        if node is None:
            if not default and not reaction:
                self.problems.add(rule, where, "name the events with `on:`")
            return default
        names = self.strings(node, f"{where}.on") or []
        for name in names:
            try:
                check_event_pattern(name)
            except ValueError as exc:
                self.problems.add(node, f"{where}.on", str(exc))
        return tuple(names)

    def filters(self, fields: dict[str, yaml.Node], where: str) -> Filters:
        tenant = self.strings(fields["tenant"], f"{where}.tenant") if "tenant" in fields else None
        space = (
            self.strings(fields["space"], f"{where}.space", unquoted=True)
            if "space" in fields
            else None
        )
        when = self.mapping(fields["when"], f"{where}.when") if "when" in fields else {}
        when = when or {}
        got: dict[str, Any] = {}
        for key, node in when.items():
            at = f"{where}.when.{key}"
            if key == "title":
                got["title"] = self.regex(node, at)
            elif key in ("label", "author", "content_type"):
                got[key] = self.strings(node, at, unquoted=key == "label")
                bad = set(got[key] or ()) - CONTENT_TYPES if key == "content_type" else set()
                if bad:
                    self.problems.add(
                        node,
                        at,
                        f"unknown content type(s) {sorted(bad)} "
                        f"(expected: {', '.join(sorted(CONTENT_TYPES))})",
                    )
            else:
                self.problems.add(
                    node, at, f"unknown condition (expected one of: {', '.join(sorted(WHEN_KEYS))})"
                )
        return Filters.build(tenant=tenant, space=space, **got)

    def action_kinds(self, fields: dict[str, yaml.Node]) -> set[str]:
        node = fields.get("actions")
        if not isinstance(node, yaml.SequenceNode):
            return set()
        return {
            str(k.value) for n in node.value if isinstance(n, yaml.MappingNode) for k, _ in n.value
        }

    def behaviour(
        self, rule: yaml.Node, fields: dict[str, yaml.Node], where: str
    ) -> tuple[Handler | None, tuple[str, ...], dict[str, Any]]:
        if ("reaction" in fields) == ("actions" in fields):
            self.problems.add(rule, where, "give either `reaction:` (a built-in) or `actions:`")
            return None, (), {}
        if "reaction" in fields:
            return self.builtin(fields, where)
        if "options" in fields:
            self.problems.add(
                fields["options"], f"{where}.options", "options belong to a `reaction:`"
            )
        return self.actions(fields["actions"], where), (), {}

    def builtin(
        self, fields: dict[str, yaml.Node], where: str
    ) -> tuple[Handler | None, tuple[str, ...], dict[str, Any]]:
        node = fields["reaction"]
        name = self.string(node, f"{where}.reaction")
        builtin = BUILTINS.get(name or "")
        if builtin is None:
            if name is not None:
                self.problems.add(
                    node,
                    f"{where}.reaction",
                    f"unknown reaction {name!r} (built-ins: {', '.join(sorted(BUILTINS))})",
                )
            return None, (), {}
        options_node = fields.get("options")
        option_nodes = (
            (self.mapping(options_node, f"{where}.options") or {}) if options_node else {}
        )
        options = {k: self.plain(v) for k, v in option_nodes.items()}
        try:
            handler = builtin.make(options)
        except OptionError as exc:
            at = option_nodes.get(exc.option or "", options_node or node)
            self.problems.add(at, f"{where}.options", str(exc))
            return None, builtin.events, options
        return handler, builtin.events, options

    def actions(self, node: yaml.Node, where: str) -> Handler | None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problems.add(node, f"{where}.actions", "must be a non-empty list of actions")
            return None
        compiled = [self.action(n, f"{where}.actions[{i}]", i) for i, n in enumerate(node.value)]
        if any(a is None for a in compiled):
            return None
        return _rule_handler([a for a in compiled if a is not None])

    def action(self, node: yaml.Node, where: str, position: int = 0) -> rule_actions.Action | None:
        fields = self.mapping(node, where)
        if fields is None:
            return None
        problem = _action_keys_problem(list(fields))
        if problem is not None:
            self.problems.add(node, where, problem)
            return None
        kind, value = next(iter(fields.items()))
        label = f"{self.problems.source}:{node.start_mark.line + 1}"
        if kind in ("inline_comment", "replace"):
            spec = self.mapping(value, f"{where}.{kind}")
            if spec is None:
                return None
            pattern_key, body_key = (
                ("match", "body") if kind == "inline_comment" else ("pattern", "with")
            )
            if set(spec) != {pattern_key, body_key}:
                got = f" (got: {', '.join(spec)})" if spec else ""
                self.problems.add(
                    value,
                    f"{where}.{kind}",
                    f"needs exactly `{pattern_key}` and `{body_key}`{got}",
                )
                return None
            pattern = self.regex(spec[pattern_key], f"{where}.{kind}.{pattern_key}")
            if pattern is None:
                return None
            replace = kind == "replace"  # its text replaces matched text: no markup, may be ""
            body = self.template(
                spec[body_key],
                f"{where}.{kind}.{body_key}",
                match=pattern,
                fragment=not replace,
                allow_empty=replace,
            )
            if body is None:
                return None
            return rule_actions.Action(kind, label, body, pattern, position)
        body = self.template(value, f"{where}.{kind}")
        return None if body is None else rule_actions.Action(kind, label, body, position=position)


def _action_keys_problem(keys: list[str]) -> str | None:
    """What is wrong with an action's keys (exactly one, a known action), naming them."""
    known = rule_actions.ACTIONS
    expected = f"one of: {', '.join(known)}"
    unknown = [k for k in keys if k not in known]
    if len(keys) == 1 and not unknown:
        return None
    if not keys:
        return f"an action needs a key, {expected}"
    parts = []
    if len(keys) > 1:
        parts.append(
            f"an action has exactly one key, not {len(keys)} ({', '.join(keys)}): "
            "write each action as its own list item"
        )
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"unknown action {key!r}{hint}")
    return "; ".join(parts) + f"; an action is {expected}"


def _not_on_removals(handler: Handler) -> Handler:
    """A rules-file reaction reads its content first: on an event that removed it (a wildcard
    matched ``page.trashed``, ``page.deleted`` or ``comment.deleted``) it has nothing to do."""

    async def unless_removed(event: Event, ctx: ReactionContext) -> None:
        if event.type in REMOVALS:
            ctx.log.debug("rule skipped: the event removed its content")
            return
        await handler(event, ctx)

    return unless_removed


def _rule_handler(actions: list[rule_actions.Action]) -> Handler:
    async def run_rule(event: Event, ctx: ReactionContext) -> None:
        content = await ctx.content()
        kind, cid = await ctx.target()
        page = await ctx.get(kind, cid)
        variables = {
            "event": rule_actions.event_vars(event),
            "page": rule_actions.content_vars(page),
            "content": rule_actions.content_vars(content),
        }
        for action in actions:
            await action.run(event, ctx, variables)

    return run_rule


def compile_rules(text: str, source: str = "rules") -> Router:
    """Validate and compile rules text; raises ConfigError listing every problem."""
    try:
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
        if root is not None:
            loader.construct_document(root)  # tags and values YAML cannot construct, up front
        compiler = _Compiler(source, loader)
        router = compiler.compile(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:{_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise ConfigError(
            f"{source}: nested too deeply (lists or mappings within each other)"
        ) from None
    loader.dispose()
    if compiler.problems.lines:
        raise ConfigError(sorted(compiler.problems.lines, key=_line_number))
    return router


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """``<line>: not valid YAML: <what>`` for a YAML error."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        return f"{line}: not valid YAML: {str(exc).splitlines()[0]}"
    mark = getattr(exc, "problem_mark", None)
    line_text = f"{mark.line + 1}" if mark is not None else "?"
    return f"{line_text}: not valid YAML: {getattr(exc, 'problem', exc)}"


def _line_number(problem: str) -> int:
    match = re.search(r":(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _read_utf8(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_rules(path: Path, read: Callable[[Path], str] = _read_utf8) -> Router:
    try:
        text = read(path)
    except OSError as exc:
        raise ConfigError(f"REACTOR_RULES_FILE: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        data = bytes(exc.object)
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}): "
            "save the rules file as UTF-8"
        ) from None
    return compile_rules(text, str(path))
