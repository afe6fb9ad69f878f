"""The small surface of Confluence that reactions use, as a Protocol.

Reactions and their context code against :class:`ConfluenceOps`; tests give them a fake that
records calls, the worker gives them an adapter over the real, budgeted client. Content is
addressed by ``(kind, id)`` where kind is ``page``, ``blogpost`` or ``comment``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

Kind = Literal["page", "blogpost", "comment"]
# A pure edit: (title, storage body) -> (title, storage body); returning the input unchanged
# means "nothing to do" and sends nothing.
Transform = Callable[[str, str], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Content:
    """A page, blog post or comment as the reactions see it (storage-format body)."""

    id: str
    kind: Kind
    title: str
    body: str
    version: int
    version_message: str = ""
    author_id: str | None = None  # of the current version
    parent_id: str | None = None  # page parent, or the page/blog post a comment is on
    parent_kind: Kind | None = None
    space_id: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Comment:
    id: str
    body: str
    author_id: str | None
    version: int
    resolved: bool = False


class ConfluenceOps(Protocol):
    """What reactions need from Confluence; every call is authenticated and budgeted.

    ``writers`` collects the account ids Confluence reports as author of our own writes: the
    app's account on this site, learned for loop prevention. ``on_writer``, when set, is
    awaited with each new one as soon as the write returns.
    """

    writers: set[str]
    on_writer: Callable[[str], Awaitable[None]] | None

    async def get_content(self, kind: Kind, content_id: str) -> Content: ...

    async def update_content(
        self, kind: Kind, content_id: str, transform: Transform, note: str
    ) -> Content | None:
        """Safe update (version + 1, retry on conflict) whose version message is the app's
        edit marker followed by ``note``; None when the transform changed nothing."""
        ...

    async def footer_comments(self, kind: Kind, content_id: str) -> list[Comment]: ...

    async def inline_comments(self, kind: Kind, content_id: str) -> list[Comment]: ...

    async def replies(self, comment_id: str) -> list[Comment]: ...

    async def create_footer_comment(self, kind: Kind, content_id: str, body: str) -> str: ...

    async def reply(self, comment_id: str, body: str) -> str: ...

    async def create_inline_comment(
        self, kind: Kind, content_id: str, body: str, selection: str, count: int, index: int
    ) -> str: ...

    async def update_comment(self, comment_id: str, body: str) -> None: ...

    async def labels(self, kind: Kind, content_id: str) -> list[str]: ...
