"""The built-in actions of the rules file and their sandboxed templates.

Templates are Jinja2 in a :class:`~jinja2.sandbox.SandboxedEnvironment` with autoescaping, so
values from events and pages (titles, names) cannot inject markup, and template authors cannot
reach Python internals. A template renders a storage-format fragment; plain text is wrapped in
paragraphs. Page edits go through the client's safe update with pure, idempotent transforms.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from app.atlassian.events import Event
from app.errors import PermanentFailure
from workers import storage
from workers.context import ReactionContext
from workers.ops import Content


def _mention(account_id: object) -> Markup:
    return Markup(storage.mention(str(account_id)))  # noqa: S704 - mention() escapes its input


# The longest string or list one ``*`` may build in a template, and the largest ``**`` exponent
# and result (bits): a rule's text is a comment or a page fragment, never megabytes (``range``
# has its own bound in the sandbox).
MAX_REPEAT = 100_000
MAX_EXPONENT = 64
MAX_POWER_BITS = 4096


# The most loop steps one render may take, all loops together: nested loops that write
# nothing are bounded by no output size (two ranges of 100,000 are 10**10 steps).
MAX_LOOP_STEPS = 1_000_000
# What every ``for`` of a rule's template iterates through (a global of the environment).
LOOP_GUARD = "_reactor_loop_steps"
_steps_left: ContextVar[list[int] | None] = ContextVar("template_loop_steps", default=None)


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """``iterable``, each item charged to the current render's loop budget."""
    budget = _steps_left.get()
    for item in iterable:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise SecurityError(f"too much work: loops ran more than {MAX_LOOP_STEPS} steps")
        yield item


def loop_budget() -> list[int]:
    """A fresh budget for one render (set it with :func:`budgeted`)."""
    return [MAX_LOOP_STEPS]


def budgeted(render: Callable[[], Any]) -> Any:
    """Run ``render`` with a loop budget of its own."""
    token = _steps_left.set(loop_budget())
    try:
        return render()
    finally:
        _steps_left.reset(token)


_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_PERCENT_WIDTHS = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d+))?")
_BRACE_SPECS = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _format_too_wide(text: str) -> bool:
    """Whether a %- or {}-format string asks for a field wider (or more precise) than the
    bound: the padding would be built before any length check could see it."""
    numbers = [n for m in _PERCENT_WIDTHS.finditer(text) for n in m.groups() if n]
    numbers += [n for spec in _BRACE_SPECS.findall(text) for n in re.findall(r"\d+", spec)]
    return any(len(n) > 6 or int(n) > MAX_REPEAT for n in numbers)


def _bounded_filter(name: str, width_at: int, original: Callable[..., Any]) -> Callable[..., Any]:
    # wraps() keeps the filter's pass_environment / pass_eval_context marks (wordwrap has one)
    @functools.wraps(original)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        width = args[width_at] if len(args) > width_at else kwargs.get("width")
        if isinstance(width, int) and width > MAX_REPEAT:
            raise SecurityError(f"'{name}' takes widths up to {MAX_REPEAT}")
        if name == "format" and args and isinstance(args[0], str) and _format_too_wide(args[0]):
            raise SecurityError(f"'format' takes widths up to {MAX_REPEAT}")
        return original(*args, **kwargs)

    return bounded


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with what can build a huge value in one step bounded: ``*``, ``**``,
    ``%`` widths, the padding filters and string methods, and ``replace``'s result."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name, width_at in (("center", 1), ("indent", 1), ("wordwrap", 2), ("format", 0)):
            self.filters[name] = _bounded_filter(name, width_at, self.filters[name])

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The template's tree, every ``for`` iterating through :func:`counted`."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            guard = nodes.Name(LOOP_GUARD, "load", lineno=loop.iter.lineno)
            loop.iter = nodes.Call(guard, [loop.iter], [], None, None, lineno=loop.iter.lineno)
        return tree

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (counted(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name in _WIDTH_METHODS and any(
                isinstance(a, int) and a > MAX_REPEAT for a in (*args, *kwargs.values())
            ):
                raise SecurityError(f"'{name}' takes widths up to {MAX_REPEAT}")
            if name == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
                old, new = args[0], args[1]
                grows = (owner.count(old) if old else len(owner) + 1) * (len(new) - len(old))
                if len(owner) + grows > MAX_REPEAT * 10:
                    raise SecurityError(f"'replace' would build more than {MAX_REPEAT * 10}")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # str.format / format_map reach templates through this wrapper, not through call()
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _format_too_wide(owner):
            name = getattr(value, "__name__", "format")

            def refused(*args: Any, **kwargs: Any) -> str:
                raise SecurityError(f"'{name}' takes widths up to {MAX_REPEAT}")

            return refused
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, str) and _format_too_wide(left):
                raise SecurityError(f"'%' takes widths up to {MAX_REPEAT}")
        elif operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | bytes | list | tuple)
                if sized and isinstance(times, int) and len(seq) * times > MAX_REPEAT:
                    raise SecurityError(f"'*' would build more than {MAX_REPEAT} items")
        elif isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"'**' takes exponents up to {MAX_EXPONENT}")
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and (left.bit_length() * right > MAX_POWER_BITS)
        ):
            raise SecurityError(f"'**' makes numbers up to {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def environment() -> SandboxedEnvironment:
    env = BoundedSandbox(autoescape=True, undefined=StrictUndefined)
    env.globals["mention"] = _mention
    env.globals[LOOP_GUARD] = counted
    return env


def event_vars(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "tenant": event.tenant,
        "content_id": event.content_id,
        "content_type": event.content_type,
        "space_key": event.space_key,
        "space_id": event.space_id,
        "title": event.title,
        "actor": event.actor,
        "version": event.version,
        "label": event.label,
    }


def content_vars(content: Content) -> dict[str, Any]:
    return {
        "id": content.id,
        "kind": content.kind,
        "title": content.title,
        "version": content.version,
        "author_id": content.author_id,
        "parent_id": content.parent_id,
        "space_id": content.space_id,
    }


def as_storage(rendered: str) -> str:
    """Plain text becomes paragraphs; markup is kept as written."""
    text = rendered.strip()
    if text.startswith("<"):
        return text
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join(f"<p>{' '.join(p.split())}</p>" for p in paragraphs)


def render_fragment(template: Template, variables: Mapping[str, Any], where: str) -> str:
    fragment = as_storage(template.render(variables))
    problem = storage.well_formed(fragment)
    if problem is not None:
        raise PermanentFailure(f"{where}: the template produced invalid storage XML ({problem})")
    return fragment


def match_vars(m: re.Match[str]) -> dict[str, Any]:
    return {"text": m.group(0), "groups": m.groups(), "named": m.groupdict()}


@dataclass(frozen=True, slots=True)
class Action:
    """One compiled action of a rule: ``run(event, ctx, variables)``."""

    kind: str
    where: str  # "rules.yml:12" for messages (never part of a key: the file moves, lines shift)
    body: Template | None = None
    pattern: re.Pattern[str] | None = None
    position: int = 0  # the action's index within its rule

    async def run(self, event: Event, ctx: ReactionContext, variables: dict[str, Any]) -> None:
        runner = _RUNNERS[self.kind]
        await runner(self, event, ctx, variables)


async def _comment(action: Action, event: Event, ctx: ReactionContext, v: dict[str, Any]) -> None:
    assert action.body is not None
    await ctx.comment(render_fragment(action.body, v, action.where))


async def _reply(action: Action, event: Event, ctx: ReactionContext, v: dict[str, Any]) -> None:
    assert action.body is not None
    await ctx.reply(event.content_id, render_fragment(action.body, v, action.where))


async def _inline(action: Action, event: Event, ctx: ReactionContext, v: dict[str, Any]) -> None:
    assert action.body is not None and action.pattern is not None
    kind, cid = await ctx.target()
    page = await ctx.get(kind, cid)
    view = storage.parse(page.body)
    for m in storage.find_all(view, action.pattern):
        if not m.group(0).strip():
            continue
        count, index = storage.occurrence(view, m.group(0), m.start())
        if index < 0:
            continue  # not selectable: across blocks, in a code body, or overlapping another
        body = render_fragment(action.body, {**v, "match": match_vars(m)}, action.where)
        # Once per rule (the reaction's name is part of every key), action, matched text and
        # occurrence: nothing that changes when the rules file is edited or moved.
        once = f"inline:{cid}:{action.position}:{m.group(0)}:{index}"
        # The key's earlier form (with the file's path and the action's line):
        # what was recorded under it counts, so no inline comment is posted twice at the
        # upgrade. Such records expire with the ``once`` retention (30 days).
        formerly = f"inline:{cid}:{action.where}:{m.group(0)}:{index}"
        await ctx.inline_comment(
            m.group(0), body, count=count, index=index, once=once, formerly=formerly
        )
        return


def _append_transform(fragment: str, at_end: bool) -> Callable[[str, str], tuple[str, str]]:
    wanted = storage.canonical(fragment)

    def transform(title: str, body: str) -> tuple[str, str]:
        # already there, however spelt (Confluence re-serialises storage) and whatever was
        # added around its text in place (an inline comment's marker)
        if fragment in body or wanted in storage.canonical(body):
            return title, body
        return title, body + fragment if at_end else fragment + body

    return transform


async def _append(action: Action, event: Event, ctx: ReactionContext, v: dict[str, Any]) -> None:
    assert action.body is not None
    kind, cid = await ctx.target()
    fragment = render_fragment(action.body, v, action.where)
    transform = _append_transform(fragment, at_end=action.kind == "append")
    await ctx.edit(transform, what=f"{action.kind} (rule)", kind=kind, content_id=cid)


def replace_transform(
    pattern: re.Pattern[str], replacement: Callable[[re.Match[str]], str]
) -> Callable[[str, str], tuple[str, str]]:
    """Replace ``pattern`` in the visible text of a storage body; markup is left intact."""

    def transform(title: str, body: str) -> tuple[str, str]:
        view = storage.parse(body)
        reps = [
            storage.Replacement(m.start(), m.end(), replacement(m))
            for m in storage.find_all(view, pattern)
            if m.end() > m.start() and replacement(m) != m.group(0)
        ]
        return (title, storage.replace(view, reps)) if reps else (title, body)

    return transform


async def _replace(action: Action, event: Event, ctx: ReactionContext, v: dict[str, Any]) -> None:
    assert action.body is not None and action.pattern is not None
    kind, cid = await ctx.target()
    template = action.body

    def replacement(m: re.Match[str]) -> str:
        return html.unescape(template.render({**v, "match": match_vars(m)}))

    transform = replace_transform(action.pattern, replacement)
    await ctx.edit(transform, what="replace (rule)", kind=kind, content_id=cid)


_RUNNERS = {
    "comment": _comment,
    "reply": _reply,
    "inline_comment": _inline,
    "append": _append,
    "prepend": _append,
    "replace": _replace,
}
ACTIONS = tuple(_RUNNERS)
