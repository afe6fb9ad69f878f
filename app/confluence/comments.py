"""Footer and inline comments: list, read, create (with replies and text anchors), delete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from app.confluence import pages
from app.confluence.errors import Conflict, NotFound, SelectionNotFound
from app.confluence.models import Comment, CommentKind, Page, UpdateResult
from app.confluence.pagination import check_limit
from app.confluence.transport import Transport

Container = Literal["pages", "blogposts"]


def _footer(data: Any) -> Comment:
    return Comment.from_json(data, "footer")


def _inline(data: Any) -> Comment:
    return Comment.from_json(data, "inline")


class CommentsAPI:
    """Comment operations; mixed into :class:`~app.confluence.ConfluenceClient`."""

    _t: Transport

    def iter_footer_comments(
        self,
        content_id: str,
        *,
        container: Container = "pages",
        body_format: str | None = "storage",
        status: Sequence[str] | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Comment]:
        """Top-level footer comments of a page (or blog post); replies are listed separately."""
        url = self._t.site.v2(f"/{container}/{content_id}/footer-comments")
        params = {"body-format": body_format, "status": status, "sort": sort, "limit": limit}
        return self._t.iterate_as(_footer, url, params, check_limit(limit))

    def iter_inline_comments(
        self,
        content_id: str,
        *,
        container: Container = "pages",
        body_format: str | None = "storage",
        status: Sequence[str] | None = None,
        resolution_status: Sequence[str] | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Comment]:
        """Top-level inline comments of a page (or blog post), optionally by resolution."""
        url = self._t.site.v2(f"/{container}/{content_id}/inline-comments")
        params = {
            "body-format": body_format,
            "status": status,
            "resolution-status": resolution_status,
            "sort": sort,
            "limit": limit,
        }
        return self._t.iterate_as(_inline, url, params, check_limit(limit))

    def iter_comment_replies(
        self,
        comment_id: str,
        *,
        kind: CommentKind = "footer",
        body_format: str | None = "storage",
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Comment]:
        """Replies to a footer (or inline) comment (GET /{kind}-comments/{id}/children)."""
        url = self._t.site.v2(f"/{kind}-comments/{comment_id}/children")
        params = {"body-format": body_format, "sort": sort, "limit": limit}
        return self._t.iterate_as(
            _inline if kind == "inline" else _footer, url, params, check_limit(limit)
        )

    async def get_comment(
        self,
        comment_id: str,
        *,
        kind: CommentKind = "footer",
        body_format: str | None = "storage",
        version: int | None = None,
    ) -> Comment:
        """One footer or inline comment by id."""
        url = self._t.site.v2(f"/{kind}-comments/{comment_id}")
        reply = await self._t.call(
            "GET", url, params={"body-format": body_format, "version": version}
        )
        return Comment.from_json(reply.json_object(), kind)

    async def create_footer_comment(
        self,
        body: str,
        *,
        page_id: str | None = None,
        blog_post_id: str | None = None,
        attachment_id: str | None = None,
        representation: pages.Representation = "storage",
    ) -> Comment:
        """A top-level footer comment on a page, blog post or attachment."""
        request = pages.footer_comment_request(
            body,
            page_id=page_id,
            blog_post_id=blog_post_id,
            attachment_id=attachment_id,
            representation=representation,
        )
        return await self._create("footer", request)

    async def reply_to_comment(
        self,
        parent: Comment,
        body: str,
        *,
        representation: pages.Representation = "storage",
    ) -> Comment:
        """A reply in the thread of ``parent`` (footer or inline, same kind as the parent)."""
        if parent.kind == "inline":
            request = pages.inline_reply_request(
                body, parent_comment_id=parent.id, representation=representation
            )
        else:
            request = pages.footer_comment_request(
                body, parent_comment_id=parent.id, representation=representation
            )
        return await self._create(parent.kind, request)

    async def create_inline_comment(
        self,
        body: str,
        *,
        selection: str,
        match_count: int,
        match_index: int = 0,
        page_id: str | None = None,
        blog_post_id: str | None = None,
        representation: pages.Representation = "storage",
    ) -> Comment:
        """An inline comment on occurrence ``match_index`` (of ``match_count``) of ``selection``."""
        request = pages.inline_comment_request(
            body,
            selection=selection,
            match_count=match_count,
            match_index=match_index,
            page_id=page_id,
            blog_post_id=blog_post_id,
            representation=representation,
        )
        return await self._create("inline", request)

    async def comment_on_text(
        self, page_id: str, selection: str, body: str, *, occurrence: int = 0
    ) -> Comment:
        """Read the page, count ``selection`` in its text, and anchor an inline comment there."""
        url = self._t.site.v2(f"/pages/{page_id}")
        reply = await self._t.call("GET", url, params={"body-format": "storage"})
        count = pages.count_matches(Page.from_json(reply.json_object()).storage, selection)
        if count <= occurrence:
            raise SelectionNotFound(
                f"the text occurs {count} times, occurrence {occurrence} was asked", url=url
            )
        return await self.create_inline_comment(
            body, selection=selection, match_count=count, match_index=occurrence, page_id=page_id
        )

    async def find_comment(self, comment_id: str) -> Comment:
        """A comment by id when its kind is unknown (events do not say): footer, then inline."""
        try:
            return await self.get_comment(comment_id, kind="footer")
        except NotFound:
            return await self.get_comment(comment_id, kind="inline")

    async def put_comment(self, current: Comment, body: str, message: str) -> Comment:
        """Replace the body of ``current`` (as just read) as version ``current + 1``."""
        return await self._put_comment(current, body, message, None)

    async def resolve_comment(
        self, current: Comment, *, resolved: bool = True, message: str = pages.APP_EDIT_MARKER
    ) -> Comment:
        """Resolve (or reopen, ``resolved=False``) an inline comment thread, body unchanged."""
        return await self._put_comment(current, current.storage, message, resolved)

    async def _put_comment(
        self, current: Comment, body: str, message: str, resolved: bool | None
    ) -> Comment:
        request = pages.comment_update_request(
            current, body=body, message=message, resolved=resolved
        )
        url = self._t.site.v2(f"/{current.kind}-comments/{current.id}")
        reply = await self._t.call("PUT", url, json_body=request)
        return Comment.from_json(reply.json_object(), current.kind)

    async def update_comment(
        self,
        comment_id: str,
        transform: Callable[[str], str],
        *,
        kind: CommentKind = "footer",
        note: str = "",
        max_attempts: int = 5,
    ) -> UpdateResult[Comment]:
        """Read, transform the storage body, write back; re-read on a version conflict."""
        message = pages.edit_message(note)
        conflict: Conflict | None = None
        for attempt in range(1, max(1, max_attempts) + 1):
            current = await self.get_comment(comment_id, kind=kind)
            body = transform(current.storage)
            if body == current.storage:
                return UpdateResult(current, changed=False, attempts=attempt)
            try:
                written = await self.put_comment(current, body, message)
            except Conflict as exc:
                conflict = exc
                continue
            return UpdateResult(written, changed=True, attempts=attempt)
        assert conflict is not None
        raise conflict

    async def delete_comment(self, comment_id: str, *, kind: CommentKind = "footer") -> None:
        """Delete a footer or inline comment permanently."""
        await self._t.call("DELETE", self._t.site.v2(f"/{kind}-comments/{comment_id}"))

    async def _create(self, kind: CommentKind, request: dict[str, Any]) -> Comment:
        reply = await self._t.call("POST", self._t.site.v2(f"/{kind}-comments"), json_body=request)
        return Comment.from_json(reply.json_object(), kind)
