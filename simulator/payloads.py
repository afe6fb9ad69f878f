"""Event bodies as Confluence sends them (pure): Connect webhooks and Forge trigger events.

Connect shapes follow the captured Cloud payloads (page/blog/comment objects with ``idAsString``,
epoch-millisecond dates, ``userAccountId``, ``accountType``, ``timestamp``); Forge shapes follow
the Confluence events page (``eventType``, ``atlassianId``, ``content`` with ``space``,
``history`` and ``version``, ``selfGenerated``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from simulator.clock import iso_ms
from simulator.site import ContentEvent
from simulator.store import Comment, Content, Store

FORGE_NAMES = {
    "page_created": "avi:confluence:created:page",
    "page_updated": "avi:confluence:updated:page",
    "page_trashed": "avi:confluence:trashed:page",
    "page_restored": "avi:confluence:restored:page",
    "page_removed": "avi:confluence:deleted:page",
    "page_moved": "avi:confluence:moved:page",
    "blog_created": "avi:confluence:created:blogpost",
    "blog_updated": "avi:confluence:updated:blogpost",
    "blog_trashed": "avi:confluence:trashed:blogpost",
    "blog_restored": "avi:confluence:restored:blogpost",
    "blog_removed": "avi:confluence:deleted:blogpost",
    "comment_created": "avi:confluence:created:comment",
    "comment_updated": "avi:confluence:updated:comment",
    "comment_removed": "avi:confluence:deleted:comment",
    "label_added": "avi:confluence:added:label",
    "label_removed": "avi:confluence:removed:label",
    "attachment_created": "avi:confluence:created:attachment",
    "attachment_trashed": "avi:confluence:trashed:attachment",
    "attachment_removed": "avi:confluence:deleted:attachment",
    "space_created": "avi:confluence:created:space:V2",
}


def _ms(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def _account_type(store: Store, account_id: str) -> str:
    user = store.users.get(account_id)
    return "app" if user is not None and user.account_type == "app" else "customer"


def connect_content(store: Store, site: str, item: Content) -> dict[str, Any]:
    space = store.spaces[item.space_id]
    slug = item.title.replace(" ", "+")
    kind = "pages" if item.type == "page" else "blog"
    return {
        "idAsString": item.id,
        "id": item.id,
        "creatorAccountId": item.author_id,
        "spaceKey": space.key,
        "spaceId": int(space.id),
        "modificationDate": _ms(item.current.created_at),
        "lastModifierAccountId": item.current.author_id,
        "self": f"{site}/spaces/{space.key}/{kind}/{item.id}/{slug}",
        "title": item.title,
        "creationDate": _ms(item.created_at),
        "contentType": item.type,
        "version": item.current.number,
    }


def connect_comment(store: Store, site: str, item: Comment) -> dict[str, Any]:
    container = store.contents[item.container_id]
    page = connect_content(store, site, container)
    parent = (
        connect_comment(store, site, store.comments[item.parent_comment_id])
        if item.parent_comment_id in store.comments
        else page
    )
    return {
        "idAsString": item.id,
        "id": item.id,
        "creatorAccountId": item.author_id,
        "spaceKey": page["spaceKey"],
        "spaceId": page["spaceId"],
        "parent": parent,
        "modificationDate": _ms(item.current.created_at),
        "lastModifierAccountId": item.current.author_id,
        "self": f"{page['self']}?focusedCommentId={item.id}",
        "creationDate": _ms(item.created_at),
        "contentType": "comment",
        "version": item.current.number,
    }


def connect_payload(store: Store, site: str, event: ContentEvent) -> dict[str, Any]:
    """The body of a Connect webhook for ``event`` (it does not name the event)."""
    body: dict[str, Any] = {
        "userAccountId": event.actor_id,
        "accountType": _account_type(store, event.actor_id),
        "timestamp": event.at_ms,
        "suppressNotifications": False,
    }
    if "updateTrigger" in event.extra:
        body["updateTrigger"] = event.extra["updateTrigger"]
    if event.kind in ("page", "blogpost"):
        key = "page" if event.kind == "page" else "blog"
        item = store.contents[event.object_id]
        body[key] = connect_content(store, site, item)
        if event.name == "page_moved":
            old = store.contents.get(event.extra.get("oldParentId") or "")
            new = store.contents.get(item.parent_id or "")
            body["oldParent"] = connect_content(store, site, old) if old else None
            body["newParent"] = connect_content(store, site, new) if new else None
    elif event.kind == "comment":
        body["comment"] = connect_comment(store, site, store.comments[event.object_id])
    elif event.kind == "label":
        label = store.labels[event.object_id]
        target = store.contents[event.extra["contentId"]]
        body["label"] = {"name": label.name, "prefix": label.prefix, "id": label.id}
        body["labeled"] = connect_content(store, site, target)
    elif event.kind == "attachment":
        att = store.attachments[event.object_id]
        body["attachedTo"] = connect_content(store, site, store.contents[att.container_id])
        body["attachments"] = [
            {
                "id": att.id,
                "fileName": att.title,
                "fileSize": att.file_size,
                "contentType": att.media_type,
                "version": att.version,
                "creatorAccountId": att.author_id,
            }
        ]
    elif event.kind == "space":
        space = store.spaces[event.object_id]
        body["space"] = {
            "key": space.key,
            "name": space.name,
            "id": int(space.id),
            "creatorAccountId": space.author_id,
        }
    return body


def _forge_user(store: Store, account_id: str) -> dict[str, Any]:
    user = store.users.get(account_id)
    kind = "app" if user is not None and user.account_type == "app" else "atlassian"
    # PII fields carry the account id, as Forge documents
    return {
        "type": "known",
        "accountId": account_id,
        "accountType": kind,
        "username": account_id,
        "email": account_id,
        "displayName": account_id,
        "publicName": account_id,
        "isExternalCollaborator": False,
    }


def forge_content(store: Store, item: Content) -> dict[str, Any]:
    space = store.spaces[item.space_id]
    return {
        "id": item.id,
        "type": item.type,
        "status": item.status,
        "title": item.title,
        "space": {
            "id": int(space.id),
            "key": space.key,
            "alias": space.key,
            "name": space.name,
            "type": "global" if space.type == "global" else space.type,
            "status": space.status,
        },
        "history": {
            "latest": True,
            "createdBy": _forge_user(store, item.author_id),
            "ownedBy": _forge_user(store, item.owner_id or item.author_id),
            "createdDate": item.created_at,
        },
        "version": {
            "by": _forge_user(store, item.current.author_id),
            "when": item.current.created_at,
            "number": item.current.number,
        },
    }


def forge_payload(store: Store, event: ContentEvent, app_account: str) -> dict[str, Any] | None:
    """The Forge event for ``event``, or ``None`` when Forge has no such event."""
    name = FORGE_NAMES.get(event.name)
    if name is None:
        return None
    body: dict[str, Any] = {
        "eventType": name,
        "atlassianId": event.actor_id,
        "eventCreatedDate": iso_ms(event.at_ms / 1000),
        "suppressNotifications": False,
        "selfGenerated": event.actor_id == app_account,
    }
    if "updateTrigger" in event.extra:
        body["updateTrigger"] = event.extra["updateTrigger"]
    if event.kind in ("page", "blogpost"):
        body["content"] = forge_content(store, store.contents[event.object_id])
    elif event.kind == "comment":
        comment = store.comments[event.object_id]
        container = forge_content(store, store.contents[comment.container_id])
        ancestors = []
        parent_id = comment.parent_comment_id
        while parent_id in store.comments:
            ancestors.append({"id": parent_id, "type": "comment"})
            parent_id = store.comments[parent_id].parent_comment_id
        body["content"] = {
            "id": comment.id,
            "type": "comment",
            "status": comment.status,
            "title": f"Re: {container['title']}",
            "space": container["space"],
            "history": {
                "latest": True,
                "createdBy": _forge_user(store, comment.author_id),
                "createdDate": comment.created_at,
            },
            "version": {
                "by": _forge_user(store, comment.current.author_id),
                "when": comment.current.created_at,
                "number": comment.current.number,
            },
            "ancestors": ancestors,
            "container": container,
            "extensions": {"location": comment.kind},
        }
    elif event.kind == "label":
        label = store.labels[event.object_id]
        body["label"] = {"id": label.id, "name": label.name, "prefix": label.prefix}
        body["content"] = forge_content(store, store.contents[event.extra["contentId"]])
    elif event.kind == "attachment":
        att = store.attachments[event.object_id]
        container = forge_content(store, store.contents[att.container_id])
        body["attachment"] = {
            "id": att.id,
            "type": "attachment",
            "title": att.title,
            "mediaType": att.media_type,
            "fileSize": att.file_size,
            "version": {"number": att.version},
            "space": container["space"],
            "container": {k: container[k] for k in ("id", "type", "status", "title")},
        }
        body["content"] = container
    elif event.kind == "space":
        space = store.spaces[event.object_id]
        body["space"] = {"id": int(space.id), "key": space.key, "name": space.name}
    return body
