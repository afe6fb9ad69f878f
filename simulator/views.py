"""JSON shapes of the v2 API, built from store records (pure)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from simulator.bodies import render
from simulator.store import Attachment, Comment, Content, Label, Revision, Space, Store


def version(rev: Revision) -> dict[str, Any]:
    return {
        "createdAt": rev.created_at,
        "message": rev.message,
        "number": rev.number,
        "minorEdit": rev.minor_edit,
        "authorId": rev.author_id,
    }


def body(rev: Revision, formats: list[str]) -> dict[str, Any]:
    """Empty unless the caller asked for a format, as Confluence does."""
    return {fmt: render(rev.representation, rev.value, fmt) for fmt in formats}


def content_links(store: Store, item: Content) -> dict[str, str]:
    space = store.spaces.get(item.space_id)
    key = space.key if space else "UNKNOWN"
    slug = quote_plus(item.title or "untitled")
    kind = "pages" if item.type == "page" else "blog"
    return {
        "webui": f"/spaces/{key}/{kind}/{item.id}/{slug}",
        "editui": f"/pages/resumedraft.action?draftId={item.id}",
        "tinyui": f"/x/{item.id}",
    }


def content(
    store: Store,
    item: Content,
    *,
    formats: list[str],
    rev: Revision | None = None,
    base: str | None = None,
    include_version: bool = True,
) -> dict[str, Any]:
    """A page (``PageSingle``/``PageBulk``) or a blog post."""
    rev = rev or item.current
    data: dict[str, Any] = {
        "id": item.id,
        "status": item.status,
        "title": rev.title,
        "spaceId": item.space_id,
        "authorId": item.author_id,
        "createdAt": item.created_at,
    }
    if item.type == "page":
        data.update(
            {
                "parentId": item.parent_id,
                "parentType": "page" if item.parent_id else None,
                "position": item.position,
                "ownerId": item.owner_id,
                "lastOwnerId": item.last_owner_id,
            }
        )
        if item.subtype:
            data["subtype"] = item.subtype
        if data["parentId"] is None:
            del data["parentId"], data["parentType"]
    if include_version:
        data["version"] = version(rev)
    data["body"] = body(rev, formats)
    data["_links"] = content_links(store, item)
    if base is not None:
        data["_links"]["base"] = base
    return data


def comment(
    store: Store,
    item: Comment,
    *,
    formats: list[str],
    base: str | None = None,
    rev: Revision | None = None,
) -> dict[str, Any]:
    rev = rev or item.current
    container = store.contents.get(item.container_id)
    data: dict[str, Any] = {
        "id": item.id,
        "status": item.status,
        "title": f"Re: {container.title}" if container else "Re:",
        "version": version(rev),
        "body": body(rev, formats),
    }
    data["pageId" if item.container_type == "page" else "blogPostId"] = item.container_id
    if item.parent_comment_id:
        data["parentCommentId"] = item.parent_comment_id
    if item.kind == "inline":
        data["resolutionStatus"] = item.resolution_status or "open"
        # A reply has no marker of its own: the thread's root holds it. The spec's properties
        # are strings, never null, so a reply's are left out rather than sent as null.
        properties = {
            "inlineMarkerRef": item.marker_ref,
            "inlineOriginalSelection": item.text_selection,
        }
        data["properties"] = {k: v for k, v in properties.items() if v is not None}
        if item.resolution_modifier_id:
            data["resolutionLastModifierId"] = item.resolution_modifier_id
            data["resolutionLastModifiedAt"] = item.resolution_modified_at
    webui = content_links(store, container)["webui"] if container else ""
    data["_links"] = {"webui": f"{webui}?focusedCommentId={item.id}"}
    if base is not None:
        data["_links"]["base"] = base
    return data


def space(
    store: Store, item: Space, *, base: str | None = None, description_format: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.id,
        "key": item.key,
        "name": item.name,
        "type": item.type,
        "status": item.status,
        "authorId": item.author_id,
        "createdAt": item.created_at,
        "homepageId": item.homepage_id,
        "currentActiveAlias": item.key,
        "_links": {"webui": f"/spaces/{item.key}"},
    }
    if data["homepageId"] is None:
        del data["homepageId"]
    if description_format:
        data["description"] = {
            description_format: {"representation": description_format, "value": item.description}
        }
    if base is not None:
        data["_links"]["base"] = base
    return data


def attachment(store: Store, item: Attachment, *, base: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": item.id,
        "status": item.status,
        "title": item.title,
        "createdAt": item.created_at,
        "mediaType": item.media_type,
        "mediaTypeDescription": item.media_type.split("/")[-1].upper(),
        "comment": item.comment,
        "fileId": item.file_id,
        "fileSize": item.file_size,
        "webuiLink": f"/pages/viewpageattachments.action?pageId={item.container_id}",
        "downloadLink": f"/download/attachments/{item.container_id}/{quote_plus(item.title)}",
        "version": {
            "createdAt": item.created_at,
            "message": "",
            "number": item.version,
            "minorEdit": False,
            "authorId": item.author_id,
        },
        "_links": {
            "webui": f"/pages/viewpageattachments.action?pageId={item.container_id}",
            "download": f"/download/attachments/{item.container_id}/{quote_plus(item.title)}",
        },
    }
    data["pageId" if item.container_type == "page" else "blogPostId"] = item.container_id
    if base is not None:
        data["_links"]["base"] = base
    return data


def label(item: Label) -> dict[str, Any]:
    return {"id": item.id, "name": item.name, "prefix": item.prefix}
