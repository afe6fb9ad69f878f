"""Events for reaction tests, built through the real Connect normaliser from payload shapes."""

from __future__ import annotations

from typing import Any

from app.atlassian.events import Event, from_connect


def page_event(
    name: str = "page_updated",
    *,
    page_id: str = "1001",
    version: int = 2,
    space: str = "DEV",
    title: str = "RFC: caching",
    actor: str = "user-1",
    tenant: str = "tenant-a",
    content_type: str = "page",
    message: str | None = None,
) -> Event:
    """A Connect page/blog webhook payload (shape of Confluence's page_updated) normalised."""
    key = "blog" if content_type == "blogpost" else "page"
    content: dict[str, Any] = {
        "spaceKey": space,
        "modificationDate": 1764230400000 + version,
        "creatorAccountId": actor,
        "lastModifierAccountId": actor,
        "id": int(page_id),
        "title": title,
        "version": version,
        "contentType": content_type,
    }
    body: dict[str, Any] = {
        "timestamp": 1764230400000 + version,
        "userAccountId": actor,
        "updateTrigger": "edit_page",
        key: content,
    }
    if message is not None:
        body[key]["versionMessage"] = message
    return from_connect(tenant, name, body)


def comment_event(
    *, comment_id: str = "5001", page_id: str = "1001", actor: str = "user-1", version: int = 1
) -> Event:
    body = {
        "timestamp": 1764230500000,
        "userAccountId": actor,
        "comment": {
            "id": int(comment_id),
            "spaceKey": "DEV",
            "version": version,
            "contentType": "comment",
            "parent": {"id": int(page_id), "contentType": "page", "title": "RFC: caching"},
        },
    }
    return from_connect("tenant-a", "comment_created", body)
