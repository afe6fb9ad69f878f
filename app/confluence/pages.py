"""Request bodies for Confluence writes, and the app's edit marker. Pure code.

Every edit the app makes carries :data:`APP_EDIT_MARKER` at the start of its version message,
for people reading the history. The message is free text that any editor can type, so it never
decides alone whether a version is the app's: :func:`is_own_version` decides from the version's
author (one of the app's accounts), and counts the marker only together with that author.
Updates send the whole body (Confluence has no patch) with version ``current + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from html.parser import HTMLParser
from typing import Any, Literal

from app.confluence.errors import InvalidResponse
from app.confluence.models import Comment, Content

APP_EDIT_MARKER = "[confluence-reactor]"

Representation = Literal["storage", "atlas_doc_format", "wiki"]
Transform = Callable[[str, str], tuple[str, str]]
"""A pure edit: (title, storage body) -> (new title, new storage body)."""

Json = dict[str, Any]


def edit_message(note: str = "") -> str:
    """The version message of an app edit: the marker, then an optional human note."""
    note = " ".join(note.split())
    return f"{APP_EDIT_MARKER} {note}" if note else APP_EDIT_MARKER


def is_app_edit(message: str | None) -> bool:
    """True when a version message starts with the app's marker. Anyone can type it: this
    says nothing about who made the version (see :func:`is_own_version`)."""
    return message is not None and message.lstrip().startswith(APP_EDIT_MARKER)


def is_own_version(author_id: str | None, app_accounts: Collection[str]) -> bool:
    """True when a version (or comment) is the app's own: its author is one of the app's
    accounts (configured, or learned from the author Confluence names on the app's writes).

    The edit marker in a version message does not count without that author: a person who
    starts their version message with it is still a person, and their edit is reacted to.
    """
    return author_id is not None and author_id in app_accounts


def body_write(value: str, representation: Representation = "storage") -> Json:
    """The flat body form ``{representation, value}`` accepted by every v2 write."""
    return {"representation": representation, "value": value}


def update_request(
    content: Content,
    *,
    title: str,
    body: str,
    message: str,
    representation: Representation = "storage",
) -> Json:
    """PUT body for a published page or blog post read just before: version ``current + 1``."""
    return {
        "id": content.id,
        "status": "current",
        "title": title,
        "body": body_write(body, representation),
        "version": {"number": content.version_number + 1, "message": message},
    }


def comment_update_request(
    comment: Comment,
    *,
    body: str,
    message: str,
    resolved: bool | None = None,
    representation: Representation = "storage",
) -> Json:
    """PUT body for a footer or inline comment read just before: version ``current + 1``.

    ``resolved`` (inline comments only) resolves (True) or reopens (False) the thread.
    """
    if comment.version is None:
        raise InvalidResponse(f"comment {comment.id} came without its version")
    request: Json = {
        "version": {"number": comment.version.number + 1, "message": message},
        "body": body_write(body, representation),
    }
    if resolved is not None:
        if comment.kind != "inline":
            raise ValueError("only inline comments are resolved or reopened")
        request["resolved"] = resolved
    return request


def create_content_request(
    *,
    space_id: str,
    title: str | None,
    body: str,
    parent_id: str | None = None,
    draft: bool = False,
    representation: Representation = "storage",
) -> Json:
    """POST body for a page (``parent_id`` allowed) or a blog post; drafts may omit the title."""
    if not draft and not title:
        raise ValueError("a published page or blog post needs a title")
    request: Json = {
        "spaceId": space_id,
        "status": "draft" if draft else "current",
        "body": body_write(body, representation),
    }
    if title:
        request["title"] = title
    if parent_id is not None:
        request["parentId"] = parent_id
    return request


def create_space_request(
    *, name: str, key: str | None = None, alias: str | None = None, description: str = ""
) -> Json:
    """POST body for a space: a name and a key or an alias."""
    if not key and not alias:
        raise ValueError("a space needs a key or an alias")
    request: Json = {"name": name}
    if key:
        request["key"] = key
    if alias:
        request["alias"] = alias
    if description:
        request["description"] = {"value": description, "representation": "plain"}
    return request


def footer_comment_request(
    body: str,
    *,
    page_id: str | None = None,
    blog_post_id: str | None = None,
    attachment_id: str | None = None,
    parent_comment_id: str | None = None,
    representation: Representation = "storage",
) -> Json:
    """POST /footer-comments: exactly one of a container or ``parent_comment_id`` (a reply)."""
    targets = {
        "pageId": page_id,
        "blogPostId": blog_post_id,
        "attachmentId": attachment_id,
        "parentCommentId": parent_comment_id,
    }
    chosen = {k: v for k, v in targets.items() if v is not None}
    if len(chosen) != 1:
        raise ValueError("a footer comment names exactly one page, blog post, attachment or parent")
    return {**chosen, "body": body_write(body, representation)}


def inline_comment_request(
    body: str,
    *,
    selection: str,
    match_count: int,
    match_index: int = 0,
    page_id: str | None = None,
    blog_post_id: str | None = None,
    representation: Representation = "storage",
) -> Json:
    """POST /inline-comments anchored to occurrence ``match_index`` of ``selection``."""
    if (page_id is None) == (blog_post_id is None):
        raise ValueError("an inline comment names exactly one page or blog post")
    if not selection:
        raise ValueError("an inline comment needs a text selection")
    if not 0 <= match_index < match_count:
        raise ValueError(f"match index {match_index} is outside 0..{match_count - 1}")
    container = {"pageId": page_id} if page_id is not None else {"blogPostId": blog_post_id}
    return {
        **container,
        "body": body_write(body, representation),
        "inlineCommentProperties": {
            "textSelection": selection,
            "textSelectionMatchCount": match_count,
            "textSelectionMatchIndex": match_index,
        },
    }


def inline_reply_request(
    body: str, *, parent_comment_id: str, representation: Representation = "storage"
) -> Json:
    """POST /inline-comments for a reply: no container, no selection."""
    return {"parentCommentId": parent_comment_id, "body": body_write(body, representation)}


# Storage elements that end a block of text: a selection never reaches across one. (The
# simulator keeps its own list on purpose: it is the independent model these are checked by.)
TEXT_BLOCKS = frozenset(
    {
        "p", "div", "br", "li", "ul", "ol", "td", "th", "tr", "table", "pre", "blockquote", "hr",
        "h1", "h2", "h3", "h4", "h5", "h6", "ac:structured-macro", "ac:rich-text-body",
        "ac:task", "ac:task-body", "ac:layout", "ac:layout-section", "ac:layout-cell",
    }
)  # fmt: skip
# Character data inside these is macro configuration, not page text.
HIDDEN_TEXT = frozenset({"ac:parameter", "ac:task-id", "ac:task-status", "ac:placeholder"})


class _TextCollector(HTMLParser):
    """Page text as readers select it: CDATA (code bodies) is dropped by the parser itself."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def _boundary(self, tag: str) -> None:
        if tag in TEXT_BLOCKS and self.parts and self.parts[-1] != "\n":
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._boundary(tag)
        if tag in HIDDEN_TEXT:
            self._hidden += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._boundary(tag)

    def handle_endtag(self, tag: str) -> None:
        self._boundary(tag)
        if tag in HIDDEN_TEXT and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data:
            self.parts.append(data)


def visible_text(storage: str) -> str:
    """The text an inline comment can select: character data with entities decoded, a newline
    at each block boundary, macro parameters and code bodies (CDATA) left out."""
    collector = _TextCollector()
    collector.feed(storage)
    collector.close()
    return "".join(collector.parts).strip("\n")


def count_matches(storage: str, selection: str) -> int:
    """How many times ``selection`` occurs in the page's text (the inline-comment match count).

    Occurrences are counted as ``str.count`` does (without overlap), within one block of text:
    a selection holding a newline, or an empty one, occurs nowhere.
    """
    if not selection or "\n" in selection:
        return 0
    return visible_text(storage).count(selection)
