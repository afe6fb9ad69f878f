""":class:`workers.ops.ConfluenceOps` over the real client (:mod:`app.confluence`).

A thin adapter: names and shapes differ, behaviour does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from app.confluence import pages
from app.confluence.client import ConfluenceClient
from app.confluence.content import UpdateResult
from app.confluence.errors import BadRequest, Conflict
from app.confluence.models import Comment as ApiComment
from app.confluence.models import Content as ApiContent
from app.confluence.models import Version
from workers.ops import Comment, Content, Kind, Transform

COMMENT_UPDATE_ATTEMPTS = 5
# Comments listed per call: a page with hundreds of comments takes a few calls, not dozens
# (points are per comment returned either way).
LIST_PAGE_SIZE = 100


def _stale_selection(exc: BadRequest) -> bool:
    """Whether a 400 says an inline comment's selection count no longer matches the page
    (``The text selection does not occur textSelectionMatchCount times``)."""
    said = " ".join(
        [exc.message, *(f"{e.title or ''} {e.detail or ''}" for e in exc.errors)]
    ).lower()
    return "textselectionmatchcount" in said and "index" not in said


def _content(kind: Kind, item: ApiContent) -> Content:
    version = item.version
    return Content(
        id=item.id,
        kind=kind,
        title=item.title,
        body=item.storage,
        version=version.number if version else 1,
        version_message=version.message if version else "",
        author_id=version.author_id if version and version.author_id else item.author_id,
        parent_id=item.parent_id,
        parent_kind="page" if item.parent_id else None,
        space_id=item.space_id,
    )


def _comment_content(item: ApiComment) -> Content:
    version = item.version
    return Content(
        id=item.id,
        kind="comment",
        title="",
        body=item.storage,
        version=version.number if version else 1,
        version_message=version.message if version else "",
        author_id=version.author_id if version else None,
        parent_id=item.page_id or item.blog_post_id,
        parent_kind="blogpost" if item.blog_post_id else "page",
    )


def _comment(item: ApiComment) -> Comment:
    version = item.version
    return Comment(
        id=item.id,
        body=item.storage,
        author_id=version.author_id if version else None,
        version=version.number if version else 1,
        resolved=item.resolution_status == "resolved",
    )


class ClientOps:
    """Reactions' view of one tenant's Confluence, for one event."""

    def __init__(self, client: ConfluenceClient) -> None:
        self.client = client
        self.writers: set[str] = set()
        self.on_writer: Callable[[str], Awaitable[None]] | None = None

    async def _wrote(self, version: Version | None) -> None:
        author = version.author_id if version is not None else None
        if author and author not in self.writers:
            self.writers.add(author)
            if self.on_writer is not None:
                # Known before the echo of this write can be dispatched, anywhere.
                await self.on_writer(author)

    async def get_content(self, kind: Kind, content_id: str) -> Content:
        if kind == "comment":
            return _comment_content(await self.client.find_comment(content_id))
        if kind == "blogpost":
            return _content(kind, await self.client.get_blogpost(content_id))
        return _content(kind, await self.client.get_page(content_id))

    async def update_content(
        self, kind: Kind, content_id: str, transform: Transform, note: str
    ) -> Content | None:
        if kind == "comment":
            return await self._update_comment(content_id, transform, note)
        result: UpdateResult[Any]
        if kind == "blogpost":
            result = await self.client.update_blogpost(content_id, transform, note=note)
        else:
            result = await self.client.update_page(content_id, transform, note=note)
        if not result.changed:
            return None
        await self._wrote(result.content.version)
        return _content(kind, result.content)

    async def _update_comment(
        self, comment_id: str, transform: Transform, note: str
    ) -> Content | None:
        conflict: Conflict | None = None
        for _ in range(COMMENT_UPDATE_ATTEMPTS):
            current = await self.client.find_comment(comment_id)
            _, body = transform("", current.storage)
            if body == current.storage:
                return None
            try:
                written = await self.client.put_comment(current, body, pages.edit_message(note))
            except Conflict as exc:
                conflict = exc
                continue
            await self._wrote(written.version)
            return _comment_content(written)
        assert conflict is not None
        raise conflict

    async def footer_comments(self, kind: Kind, content_id: str) -> list[Comment]:
        container: Literal["pages", "blogposts"] = "blogposts" if kind == "blogpost" else "pages"
        return [
            _comment(c)
            async for c in self.client.iter_footer_comments(
                content_id, container=container, limit=LIST_PAGE_SIZE
            )
        ]

    async def inline_comments(self, kind: Kind, content_id: str) -> list[Comment]:
        container: Literal["pages", "blogposts"] = "blogposts" if kind == "blogpost" else "pages"
        return [
            _comment(c)
            async for c in self.client.iter_inline_comments(
                content_id, container=container, limit=LIST_PAGE_SIZE
            )
        ]

    async def replies(self, comment_id: str) -> list[Comment]:
        # Events do not say a comment's kind, and each kind lists its replies at its own URL.
        parent = await self.client.find_comment(comment_id)
        replies = self.client.iter_comment_replies(
            comment_id, kind=parent.kind, limit=LIST_PAGE_SIZE
        )
        return [_comment(c) async for c in replies]

    async def create_footer_comment(self, kind: Kind, content_id: str, body: str) -> str:
        if kind == "blogpost":
            made = await self.client.create_footer_comment(body, blog_post_id=content_id)
        else:
            made = await self.client.create_footer_comment(body, page_id=content_id)
        await self._wrote(made.version)
        return made.id

    async def reply(self, comment_id: str, body: str) -> str:
        parent = await self.client.find_comment(comment_id)
        made = await self.client.reply_to_comment(parent, body)
        await self._wrote(made.version)
        return made.id

    async def create_inline_comment(
        self, kind: Kind, content_id: str, body: str, selection: str, count: int, index: int
    ) -> str:
        """Comment on occurrence ``index`` of ``count`` of ``selection``. When Confluence says
        the selection does not occur ``count`` times (an edit since the page was read), the
        page is read again and the comment posted once more with the count found then (the
        same occurrence while there still are that many)."""
        try:
            made = await self._inline(kind, content_id, body, selection, count, index)
        except BadRequest as exc:
            if not _stale_selection(exc):
                raise
            current = await self.get_content(kind, content_id)
            fresh = pages.count_matches(current.body, selection)
            if fresh < 1 or fresh == count:
                raise  # gone from the page, or miscounted for another reason: as it was
            made = await self._inline(
                kind, content_id, body, selection, fresh, min(index, fresh - 1)
            )
        await self._wrote(made.version)
        return made.id

    async def _inline(
        self, kind: Kind, content_id: str, body: str, selection: str, count: int, index: int
    ) -> ApiComment:
        blog = kind == "blogpost"
        return await self.client.create_inline_comment(
            body,
            selection=selection,
            match_count=count,
            match_index=index,
            page_id=None if blog else content_id,
            blog_post_id=content_id if blog else None,
        )

    async def update_comment(self, comment_id: str, body: str) -> None:
        current = await self.client.find_comment(comment_id)
        if current.storage != body:
            written = await self.client.put_comment(current, body, pages.edit_message("comment"))
            await self._wrote(written.version)

    async def labels(self, kind: Kind, content_id: str) -> list[str]:
        if kind == "blogpost":
            found = self.client.iter_labels(blog_post_id=content_id)
        elif kind == "page":
            found = self.client.iter_labels(page_id=content_id)
        else:
            return []
        return [label.name async for label in found]
