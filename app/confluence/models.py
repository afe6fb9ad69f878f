"""Typed results of the Confluence client, read from response JSON. Pure code.

Ids are strings everywhere (Confluence sends strings in v2, numbers in some v1 and webhook
payloads). Fields a reaction rarely needs stay reachable through ``raw``, the object as
received. Readers are lenient about missing fields and strict about the one field every object
must have, its ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Self, TypeVar

from app.confluence.errors import InvalidResponse

Json = dict[str, Any]
T = TypeVar("T")


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _id(data: Mapping[str, Any], key: str = "id") -> str:
    value = _str(data.get(key))
    if not value:
        raise InvalidResponse(f"object without {key!r} in a Confluence response")
    return value


def _bodies(value: Any) -> dict[str, str]:
    """``{"storage": {"representation", "value"}, ...}`` -> {"storage": "<p>...</p>"}."""
    return {
        fmt: body["value"]
        for fmt, body in _obj(value).items()
        if isinstance(body, dict) and isinstance(body.get("value"), str)
    }


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    message: str = ""
    minor_edit: bool = False
    author_id: str | None = None
    created_at: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Version | None:
        data = _obj(data)
        number = _int(data.get("number"))
        if number is None:
            return None
        return cls(
            number=number,
            message=_str(data.get("message")) or "",
            minor_edit=bool(data.get("minorEdit", False)),
            author_id=_str(data.get("authorId")),
            created_at=_str(data.get("createdAt")),
        )


@dataclass(frozen=True, slots=True)
class Content:
    """A page or a blog post."""

    id: str
    status: str
    title: str
    space_id: str | None
    version: Version | None
    body: dict[str, str]
    parent_id: str | None = None
    author_id: str | None = None
    created_at: str | None = None
    webui: str | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def storage(self) -> str:
        """The storage-format (XHTML) body; empty when it was not requested or is absent."""
        return self.body.get("storage", "")

    @property
    def version_number(self) -> int:
        if self.version is None:
            raise InvalidResponse(f"content {self.id} came without its version")
        return self.version.number

    @classmethod
    def from_json(cls, data: Any) -> Self:
        data = _obj(data)
        return cls(
            id=_id(data),
            status=_str(data.get("status")) or "current",
            title=_str(data.get("title")) or "",
            space_id=_str(data.get("spaceId")),
            version=Version.from_json(data.get("version")),
            body=_bodies(data.get("body")),
            parent_id=_str(data.get("parentId")),
            author_id=_str(data.get("authorId")),
            created_at=_str(data.get("createdAt")),
            webui=_str(_obj(data.get("_links")).get("webui")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Page(Content):
    pass


@dataclass(frozen=True, slots=True)
class BlogPost(Content):
    pass


@dataclass(frozen=True, slots=True)
class ChildContent:
    """A direct child in the page tree: a page, folder, whiteboard, database or embed."""

    id: str
    type: str
    title: str
    status: str
    space_id: str | None
    child_position: int | None

    @classmethod
    def from_json(cls, data: Any) -> ChildContent:
        data = _obj(data)
        return cls(
            id=_id(data),
            type=_str(data.get("type")) or "page",
            title=_str(data.get("title")) or "",
            status=_str(data.get("status")) or "current",
            space_id=_str(data.get("spaceId")),
            child_position=_int(data.get("childPosition")),
        )


@dataclass(frozen=True, slots=True)
class ContentVersion:
    """One entry of a page's or blog post's version history."""

    number: int
    message: str
    minor_edit: bool
    author_id: str | None
    created_at: str | None
    content_id: str | None
    body: dict[str, str]

    @classmethod
    def from_json(cls, data: Any) -> ContentVersion:
        data = _obj(data)
        version = Version.from_json(data)
        if version is None:
            raise InvalidResponse("version entry without a number in a Confluence response")
        content = _obj(data.get("page") or data.get("blogpost"))
        return cls(
            number=version.number,
            message=version.message,
            minor_edit=version.minor_edit,
            author_id=version.author_id,
            created_at=version.created_at,
            content_id=_str(content.get("id")),
            body=_bodies(content.get("body")),
        )


@dataclass(frozen=True, slots=True)
class Space:
    id: str
    key: str
    name: str
    type: str | None
    status: str | None
    homepage_id: str | None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Space:
        data = _obj(data)
        return cls(
            id=_id(data),
            key=_str(data.get("key")) or "",
            name=_str(data.get("name")) or "",
            type=_str(data.get("type")),
            status=_str(data.get("status")),
            homepage_id=_str(data.get("homepageId")),
            raw=data,
        )


CommentKind = Literal["footer", "inline"]


@dataclass(frozen=True, slots=True)
class Comment:
    """A footer or inline comment (``parent_comment_id`` set on replies)."""

    id: str
    kind: CommentKind
    status: str
    page_id: str | None
    blog_post_id: str | None
    parent_comment_id: str | None
    version: Version | None
    body: dict[str, str]
    attachment_id: str | None = None
    resolution_status: str | None = None
    inline_marker_ref: str | None = None
    inline_selection: str | None = None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @property
    def storage(self) -> str:
        return self.body.get("storage", "")

    @classmethod
    def from_json(cls, data: Any, kind: CommentKind) -> Comment:
        data = _obj(data)
        props = _obj(data.get("properties"))
        return cls(
            id=_id(data),
            kind=kind,
            status=_str(data.get("status")) or "current",
            page_id=_str(data.get("pageId")),
            blog_post_id=_str(data.get("blogPostId")),
            parent_comment_id=_str(data.get("parentCommentId")),
            version=Version.from_json(data.get("version")),
            body=_bodies(data.get("body")),
            attachment_id=_str(data.get("attachmentId")),
            resolution_status=_str(data.get("resolutionStatus")),
            inline_marker_ref=_str(props.get("inlineMarkerRef")),
            inline_selection=_str(props.get("inlineOriginalSelection")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    title: str
    status: str
    media_type: str | None
    file_size: int | None
    page_id: str | None
    blog_post_id: str | None
    file_id: str | None
    download_link: str | None
    version: Version | None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Attachment:
        data = _obj(data)
        return cls(
            id=_id(data),
            title=_str(data.get("title")) or "",
            status=_str(data.get("status")) or "current",
            media_type=_str(data.get("mediaType")),
            file_size=_int(data.get("fileSize")),
            page_id=_str(data.get("pageId")),
            blog_post_id=_str(data.get("blogPostId")),
            file_id=_str(data.get("fileId")),
            download_link=_str(data.get("downloadLink")),
            version=Version.from_json(data.get("version")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    name: str
    prefix: str | None

    @classmethod
    def from_json(cls, data: Any) -> Label:
        data = _obj(data)
        return cls(id=_id(data), name=_str(data.get("name")) or "", prefix=_str(data.get("prefix")))


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One v1 CQL search hit; ``content_id`` is set for pages, blog posts, comments, files."""

    title: str
    entity_type: str
    content_id: str | None
    content_type: str | None
    space_key: str | None
    excerpt: str
    url: str | None
    last_modified: str | None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> SearchResult:
        data = _obj(data)
        content = _obj(data.get("content"))
        space = _obj(data.get("space")) or _obj(content.get("space"))
        return cls(
            title=_str(data.get("title")) or _str(content.get("title")) or "",
            entity_type=_str(data.get("entityType")) or "",
            content_id=_str(content.get("id")),
            content_type=_str(content.get("type")),
            space_key=_str(space.get("key")),
            excerpt=_str(data.get("excerpt")) or "",
            url=_str(data.get("url")),
            last_modified=_str(data.get("lastModified")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class User:
    """A v1 user search hit."""

    account_id: str
    display_name: str
    account_type: str | None
    email: str | None
    raw: Json = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_search_result(cls, data: Any) -> User:
        data = _obj(data)
        user = _obj(data.get("user")) or data
        return cls(
            account_id=_id(user, "accountId"),
            display_name=_str(user.get("displayName")) or _str(user.get("publicName")) or "",
            account_type=_str(user.get("accountType")),
            email=_str(user.get("email")),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class UpdateResult(Generic[T]):
    """What a transform-update did: ``content`` is the object as Confluence now holds it."""

    content: T
    changed: bool
    attempts: int
