"""Loop prevention before dispatch, pure: is this event an echo of the app's own write?

Confluence reports the app's edits and comments like anyone else's. An event is ignored when
Forge marks it self-generated, when its actor is one of the app's accounts, or when the version
in the payload names one of them as its author. The app's edit marker in a version message is
free text any editor can type: it counts only together with that author, never alone. (Payloads
often omit the version's details; the handler context checks the fetched version's author
again, and the effect ledger's loop guard stops a reaction that keeps re-triggering itself
through some other path.)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from app.atlassian.events import Event
from app.confluence.pages import is_app_edit, is_own_version

_CONTENT_KEYS = ("page", "blog", "blogpost", "comment", "content")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _version(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    """The payload's version message and version author, each None when not given."""
    payload = raw.get("payload")
    scopes = [raw, payload] if isinstance(payload, dict) else [raw]
    for scope in scopes:
        for key in _CONTENT_KEYS:
            content = scope.get(key)
            if not isinstance(content, dict):
                continue
            version = content.get("version")
            version = version if isinstance(version, dict) else {}
            by = version.get("by")
            message = version.get("message")
            message = message if isinstance(message, str) else content.get("versionMessage")
            author = (
                _text(version.get("authorId"))
                or (_text(by.get("accountId")) if isinstance(by, dict) else None)
                or _text(content.get("lastModifierAccountId"))
            )
            return (message if isinstance(message, str) else None), author
    return None, None


def ignore_reason(event: Event, app_accounts: Collection[str]) -> str | None:
    """Why ``event`` must not trigger reactions, or None when it may."""
    if event.self_generated:
        return "the event is self-generated (the app's own change)"
    if event.actor is not None and event.actor in app_accounts:
        return "the actor is the app's account"
    message, author = _version(event.raw)
    if is_own_version(author, app_accounts):
        if is_app_edit(message):
            return "the version message carries the app's edit marker and its author is the app"
        return "the version's author is the app's account"
    return None
