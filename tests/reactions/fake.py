"""An in-memory Confluence that implements :class:`workers.ops.ConfluenceOps` and records calls.

It keeps versions the way Confluence does (an update is version + 1 with a message), so tests
can assert exactly what a reaction wrote and how often.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from app.confluence.pages import edit_message
from workers.ops import Comment, Content, Kind, Transform

APP = "app-account"


@dataclass
class FakeConfluence:
    contents: dict[str, Content] = field(default_factory=dict)
    comments: dict[str, list[Comment]] = field(default_factory=dict)  # container id -> comments
    inline: dict[str, list[tuple[str, str, int, int]]] = field(default_factory=dict)
    replied: dict[str, list[str]] = field(default_factory=dict)  # comment id -> reply bodies
    page_labels: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    fail_next: list[Exception] = field(default_factory=list)
    fail_reads: list[Exception] = field(default_factory=list)
    writers: set[str] = field(default_factory=set)
    on_writer: Callable[[str], Awaitable[None]] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(9000))

    def add(self, content: Content) -> Content:
        self.contents[content.id] = content
        return content

    async def _check(self) -> None:
        """A write: fails as queued, else is authored by the app's account (learned at once,
        as the real client does)."""
        if self.fail_next:
            raise self.fail_next.pop(0)
        if APP not in self.writers:
            self.writers.add(APP)
            if self.on_writer is not None:
                await self.on_writer(APP)

    async def get_content(self, kind: Kind, content_id: str) -> Content:
        self.calls.append(("get", kind, content_id))
        if self.fail_reads:
            raise self.fail_reads.pop(0)
        return self.contents[content_id]

    async def update_content(
        self, kind: Kind, content_id: str, transform: Transform, note: str
    ) -> Content | None:
        message = edit_message(note)
        current = self.contents[content_id]
        title, body = transform(current.title, current.body)
        if (title, body) == (current.title, current.body):
            self.calls.append(("update-skipped", kind, content_id))
            return None
        await self._check()
        self.calls.append(("update", kind, content_id, message))
        new = replace(
            current,
            title=title,
            body=body,
            version=current.version + 1,
            version_message=message,
            author_id=APP,
        )
        self.contents[content_id] = new
        return new

    async def footer_comments(self, kind: Kind, content_id: str) -> list[Comment]:
        self.calls.append(("list-comments", kind, content_id))
        return list(self.comments.get(content_id, []))

    async def inline_comments(self, kind: Kind, content_id: str) -> list[Comment]:
        self.calls.append(("list-inline", kind, content_id))
        items = self.inline.get(content_id, [])
        return [Comment(f"i{n}", body, APP, 1) for n, (body, *_rest) in enumerate(items)]

    async def replies(self, comment_id: str) -> list[Comment]:
        self.calls.append(("list-replies", comment_id))
        bodies = self.replied.get(comment_id, [])
        return [Comment(f"r{n}", b, APP, 1) for n, b in enumerate(bodies)]

    async def create_footer_comment(self, kind: Kind, content_id: str, body: str) -> str:
        await self._check()
        cid = str(next(self._ids))
        self.calls.append(("comment", kind, content_id))
        self.comments.setdefault(content_id, []).append(Comment(cid, body, APP, 1))
        return cid

    async def reply(self, comment_id: str, body: str) -> str:
        await self._check()
        self.calls.append(("reply", comment_id))
        self.replied.setdefault(comment_id, []).append(body)
        return str(next(self._ids))

    async def create_inline_comment(
        self, kind: Kind, content_id: str, body: str, selection: str, count: int, index: int
    ) -> str:
        await self._check()
        self.calls.append(("inline", kind, content_id, selection))
        self.inline.setdefault(content_id, []).append((body, selection, count, index))
        return str(next(self._ids))

    async def update_comment(self, comment_id: str, body: str) -> None:
        await self._check()
        self.calls.append(("update-comment", comment_id))
        for items in self.comments.values():
            for i, c in enumerate(items):
                if c.id == comment_id:
                    items[i] = replace(c, body=body, version=c.version + 1)
                    return
        raise KeyError(comment_id)

    async def labels(self, kind: Kind, content_id: str) -> list[str]:
        self.calls.append(("labels", kind, content_id))
        return self.page_labels.get(content_id, [])

    def writes(self) -> list[tuple[str, ...]]:
        reads = ("get", "list-comments", "list-inline", "list-replies", "labels", "update-skipped")
        return [c for c in self.calls if c[0] not in reads]
