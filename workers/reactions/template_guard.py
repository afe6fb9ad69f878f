"""Page-template guard: pages under a chosen parent must contain the required sections.

One footer comment per page lists what is missing. When the page changes, the app edits that
same comment (never a second one); when the page complies, the comment is edited to say so
(footer comments have no resolved state in the v2 API, so "resolved" is written in it).
Options: ``parent`` (the direct parent: page ids or titles), ``sections`` (heading texts).
Pure part: :func:`missing_sections`, :func:`decide`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.atlassian.events import Event
from workers import storage
from workers.context import ReactionContext
from workers.ops import Comment
from workers.reactions import Builtin, OptionError, check_options, str_list
from workers.routing import Handler

EVENTS = ("page.created", "page.updated")
SIGNATURE = "Template check by Confluence Reactor"
RESOLVED = "Resolved: every required section is present."


def _norm(heading: str) -> str:
    text = re.sub(r"^\s*(?:\d+(?:\.\d+)*\.?|[IVX]+\.)\s+", "", heading)  # "2.1 Scope" -> "Scope"
    return " ".join(text.strip().rstrip(":").split()).casefold()


def missing_sections(body: str, required: Sequence[str]) -> list[str]:
    """The required section names with no heading of that name in ``body`` (in given order)."""
    present = {_norm(h) for h in storage.parse(body).headings}
    return [name for name in required if _norm(name) not in present]


def guard_body(missing: Sequence[str]) -> str:
    if not missing:
        return f"<p>{RESOLVED}</p><p><em>{SIGNATURE}</em></p>"
    items = "".join(f"<li>{html.escape(name, quote=False)}</li>" for name in missing)
    return (
        "<p>This page is missing sections its template requires:</p>"
        f"<ul>{items}</ul><p>This comment is updated when the page changes.</p>"
        f"<p><em>{SIGNATURE}</em></p>"
    )


def is_guard_comment(comment: Comment, app_accounts: frozenset[str]) -> bool:
    mine = not app_accounts or comment.author_id in app_accounts
    return mine and SIGNATURE in storage.parse(comment.body).text


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["create", "update", "none"]
    body: str = ""
    comment_id: str | None = None


def decide(missing: Sequence[str], existing: Comment | None) -> Decision:
    """What to do with the guard comment given what is missing and the comment in place."""
    body = guard_body(missing)
    if existing is None:
        return Decision("create", body) if missing else Decision("none")
    if " ".join(storage.parse(existing.body).text.split()) == " ".join(
        storage.parse(body).text.split()
    ):
        return Decision("none")
    return Decision("update", body, existing.id)


async def _under_parent(
    ctx: ReactionContext, parent_id: str | None, parents: frozenset[str]
) -> bool:
    """The direct parent is named in ``parents`` by id or, failing that, by title."""
    if parent_id is None:
        return False
    if parent_id in parents:
        return True
    if all(p.isdigit() for p in parents):
        return False
    parent = await ctx.get("page", parent_id)
    return parent.title in parents


def make(options: Mapping[str, Any]) -> Handler:
    check_options(options, {"parent", "sections"})
    parents = frozenset(str_list(options, "parent"))
    if not parents:
        raise OptionError("parent", "name at least one parent page")
    sections = str_list(options, "sections")
    if not sections:
        raise OptionError("sections", "name at least one section")

    async def template_guard(event: Event, ctx: ReactionContext) -> None:
        page = await ctx.content()
        if not await _under_parent(ctx, page.parent_id, parents):
            return
        missing = missing_sections(page.body, sections)
        comments = await ctx.client.footer_comments(page.kind, page.id)
        existing = next((c for c in comments if is_guard_comment(c, ctx.app_accounts)), None)
        decision = decide(missing, existing)
        ctx.log.info("template check", missing=missing, decision=decision.action)
        if decision.action == "create":
            await ctx.comment(decision.body)
        elif decision.action == "update" and decision.comment_id is not None:
            await ctx.update_comment(decision.comment_id, decision.body)

    return template_guard


BUILTIN = Builtin(
    name="template_guard",
    events=EVENTS,
    make=make,
    latest_only=True,
    doc="Pages under a parent must contain required sections; one comment tracks what is missing.",
)
