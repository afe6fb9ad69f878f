"""Welcome: greet the author of a new page with a checklist, once per page.

Choose the spaces with the rule's ``space`` filter. Options: ``message`` (plain text, the
greeting after the author's mention) and ``checklist`` (items rendered as Confluence tasks).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from app.atlassian.events import Event
from workers import storage
from workers.context import ReactionContext
from workers.reactions import Builtin, OptionError, check_options, str_list
from workers.routing import Handler

EVENTS = ("page.created", "blogpost.created")
DEFAULT_MESSAGE = "thanks for writing this page. Before you share it, please check:"
DEFAULT_CHECKLIST = [
    "The title says what the page is about",
    "An owner and a review date are named",
    "Labels help others find it",
]


def welcome_body(author: str | None, message: str, checklist: list[str]) -> str:
    """The comment: mention, message, then the checklist as tasks (unchecked)."""
    greeting = f"{storage.mention(author)}, " if author else ""
    tasks = "".join(
        f"<ac:task><ac:task-id>{i}</ac:task-id><ac:task-status>incomplete</ac:task-status>"
        f"<ac:task-body>{html.escape(item, quote=False)}</ac:task-body></ac:task>"
        for i, item in enumerate(checklist, start=1)
    )
    task_list = f"<ac:task-list>{tasks}</ac:task-list>" if checklist else ""
    return f"<p>{greeting}{html.escape(message, quote=False)}</p>{task_list}"


def make(options: Mapping[str, Any]) -> Handler:
    check_options(options, {"message", "checklist"})
    message = options.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str) or not message.strip():
        raise OptionError("message", "must be non-empty text")
    checklist = str_list(options, "checklist", DEFAULT_CHECKLIST)

    async def welcome(event: Event, ctx: ReactionContext) -> None:
        content = await ctx.content()
        author = event.actor or content.author_id
        body = welcome_body(author, message, checklist)
        await ctx.comment(body, once=f"welcome:{content.kind}:{content.id}")

    return welcome


BUILTIN = Builtin(
    name="welcome",
    events=EVENTS,
    make=make,
    doc="Welcome comment with a checklist on pages created in chosen spaces.",
)
