"""Loop prevention before dispatch, pure: is this event an echo of the app's own write?

Confluence reports the app's edits and comments like anyone else's. An event is ignored when
Forge marks it self-generated, when its actor is one of the app's accounts, or when the version
message in the payload carries the app's edit marker. (Payloads often omit the message; the
handler context checks the fetched version again, and the effect ledger's loop guard stops a
reaction that keeps re-triggering itself through some other path.)
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from app.atlassian.events import Event
from app.confluence.pages import is_app_edit

_CONTENT_KEYS = ("page", "blog", "blogpost", "comment", "content")


def _version_message(raw: dict[str, Any]) -> str | None:
    payload = raw.get("payload")
    scopes = [raw, payload] if isinstance(payload, dict) else [raw]
    for scope in scopes:
        for key in _CONTENT_KEYS:
            content = scope.get(key)
            if not isinstance(content, dict):
                continue
            version = content.get("version")
            if isinstance(version, dict) and isinstance(version.get("message"), str):
                return str(version["message"])
            message = content.get("versionMessage")
            if isinstance(message, str):
                return message
    return None


def ignore_reason(event: Event, app_accounts: Collection[str]) -> str | None:
    """Why ``event`` must not trigger reactions, or None when it may."""
    if event.self_generated:
        return "the event is self-generated (the app's own change)"
    if event.actor is not None and event.actor in app_accounts:
        return "the actor is the app's account"
    if is_app_edit(_version_message(event.raw)):
        return "the version message carries the app's edit marker"
    return None
