"""Pages and blog posts: list, read, create, replace, delete, and safe transform-updates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Literal, TypeVar

from app.confluence import pages
from app.confluence.errors import Conflict, NotEditable
from app.confluence.models import (
    BlogPost,
    ChildContent,
    Content,
    ContentVersion,
    Page,
    UpdateResult,
)
from app.confluence.pagination import check_limit
from app.confluence.transport import Transport

C = TypeVar("C", bound=Content)
Collection = Literal["pages", "blogposts"]
__all__ = ["ContentAPI", "UpdateResult"]
DEFAULT_UPDATE_ATTEMPTS = 5
VERSIONS_WITH_BODY_MAX = 50


class ContentAPI:
    """Page and blog post operations; mixed into :class:`~app.confluence.ConfluenceClient`."""

    _t: Transport

    # -- pages ------------------------------------------------------------------------------

    def iter_pages(
        self,
        *,
        space_ids: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        title: str | None = None,
        status: Sequence[str] | None = None,
        body_format: str | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Page]:
        """Every page the caller may see, filtered (GET /pages)."""
        params = {"space-id": space_ids, "id": ids, "title": title, "status": status}
        return self._list(Page, "/pages", params, body_format, sort, limit)

    def iter_space_pages(
        self,
        space_id: str,
        *,
        depth: Literal["all", "root"] | None = None,
        title: str | None = None,
        status: Sequence[str] | None = None,
        body_format: str | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Page]:
        """The pages of one space (GET /spaces/{id}/pages)."""
        params = {"depth": depth, "title": title, "status": status}
        return self._list(Page, f"/spaces/{space_id}/pages", params, body_format, sort, limit)

    async def get_page(
        self,
        page_id: str,
        *,
        body_format: str | None = "storage",
        version: int | None = None,
        get_draft: bool = False,
    ) -> Page:
        """One page; ``body_format`` defaults to storage (without it the body comes back empty)."""
        return await self._get(Page, "pages", page_id, body_format, version, get_draft)

    async def create_page(
        self,
        space_id: str,
        title: str | None,
        body: str,
        *,
        parent_id: str | None = None,
        draft: bool = False,
        root_level: bool = False,
        representation: pages.Representation = "storage",
    ) -> Page:
        """A new page (or draft) under ``parent_id``, the space homepage, or the root."""
        request = pages.create_content_request(
            space_id=space_id,
            title=title,
            body=body,
            parent_id=parent_id,
            draft=draft,
            representation=representation,
        )
        params = {"root-level": True} if root_level else None
        reply = await self._t.call(
            "POST", self._t.site.v2("/pages"), params=params, json_body=request
        )
        return Page.from_json(reply.json_object())

    async def put_page(
        self, current: Page, *, title: str, body: str, message: str = pages.APP_EDIT_MARKER
    ) -> Page:
        """Replace title and body of ``current`` (as just read) as version ``current + 1``."""
        return await self._put(Page, "pages", current, title, body, message)

    async def update_page(
        self,
        page_id: str,
        transform: pages.Transform,
        *,
        note: str = "",
        max_attempts: int = DEFAULT_UPDATE_ATTEMPTS,
    ) -> UpdateResult[Page]:
        """Read, transform (title, storage) and write back, re-reading on a version conflict."""
        return await self._update(Page, "pages", page_id, transform, note, max_attempts)

    async def delete_page(self, page_id: str, *, purge: bool = False, draft: bool = False) -> None:
        """Move a page to the trash; ``purge`` removes an already trashed page for good."""
        await self._delete("pages", page_id, purge=purge, draft=draft)

    def iter_page_children(
        self, page_id: str, *, sort: str | None = None, limit: int = 25
    ) -> AsyncIterator[ChildContent]:
        """Direct children in the page tree (GET /pages/{id}/direct-children)."""
        url = self._t.site.v2(f"/pages/{page_id}/direct-children")
        params = {"sort": sort, "limit": check_limit(limit)}
        return self._t.iterate_as(ChildContent.from_json, url, params, limit)

    def iter_page_versions(
        self,
        page_id: str,
        *,
        body_format: str | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[ContentVersion]:
        """A page's version history; with a body the page size is capped at 50."""
        check_limit(limit, VERSIONS_WITH_BODY_MAX if body_format else 250)
        url = self._t.site.v2(f"/pages/{page_id}/versions")
        params = {"body-format": body_format, "sort": sort, "limit": limit}
        return self._t.iterate_as(ContentVersion.from_json, url, params, limit)

    # -- blog posts -------------------------------------------------------------------------

    def iter_blogposts(
        self,
        *,
        space_ids: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        title: str | None = None,
        status: Sequence[str] | None = None,
        body_format: str | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[BlogPost]:
        """Every blog post the caller may see, filtered (GET /blogposts)."""
        params = {"space-id": space_ids, "id": ids, "title": title, "status": status}
        return self._list(BlogPost, "/blogposts", params, body_format, sort, limit)

    def iter_space_blogposts(
        self,
        space_id: str,
        *,
        title: str | None = None,
        status: Sequence[str] | None = None,
        body_format: str | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[BlogPost]:
        """The blog posts of one space (GET /spaces/{id}/blogposts)."""
        params = {"title": title, "status": status}
        path = f"/spaces/{space_id}/blogposts"
        return self._list(BlogPost, path, params, body_format, sort, limit)

    async def get_blogpost(
        self,
        blogpost_id: str,
        *,
        body_format: str | None = "storage",
        version: int | None = None,
        get_draft: bool = False,
    ) -> BlogPost:
        return await self._get(BlogPost, "blogposts", blogpost_id, body_format, version, get_draft)

    async def create_blogpost(
        self,
        space_id: str,
        title: str | None,
        body: str,
        *,
        draft: bool = False,
        representation: pages.Representation = "storage",
    ) -> BlogPost:
        request = pages.create_content_request(
            space_id=space_id, title=title, body=body, draft=draft, representation=representation
        )
        reply = await self._t.call("POST", self._t.site.v2("/blogposts"), json_body=request)
        return BlogPost.from_json(reply.json_object())

    async def put_blogpost(
        self, current: BlogPost, *, title: str, body: str, message: str = pages.APP_EDIT_MARKER
    ) -> BlogPost:
        return await self._put(BlogPost, "blogposts", current, title, body, message)

    async def update_blogpost(
        self,
        blogpost_id: str,
        transform: pages.Transform,
        *,
        note: str = "",
        max_attempts: int = DEFAULT_UPDATE_ATTEMPTS,
    ) -> UpdateResult[BlogPost]:
        return await self._update(BlogPost, "blogposts", blogpost_id, transform, note, max_attempts)

    async def delete_blogpost(
        self, blogpost_id: str, *, purge: bool = False, draft: bool = False
    ) -> None:
        await self._delete("blogposts", blogpost_id, purge=purge, draft=draft)

    # -- shared -----------------------------------------------------------------------------

    def _list(
        self,
        model: type[C],
        path: str,
        params: dict[str, str | Sequence[str] | None],
        body_format: str | None,
        sort: str | None,
        limit: int,
    ) -> AsyncIterator[C]:
        query = {**params, "body-format": body_format, "sort": sort, "limit": check_limit(limit)}
        return self._t.iterate_as(model.from_json, self._t.site.v2(path), query, limit)

    async def _get(
        self,
        model: type[C],
        collection: Collection,
        content_id: str,
        body_format: str | None,
        version: int | None,
        get_draft: bool,
    ) -> C:
        params = {"body-format": body_format, "version": version, "get-draft": get_draft or None}
        reply = await self._t.call(
            "GET", self._t.site.v2(f"/{collection}/{content_id}"), params=params
        )
        return model.from_json(reply.json_object())

    async def _put(
        self,
        model: type[C],
        collection: Collection,
        current: C,
        title: str,
        body: str,
        message: str,
    ) -> C:
        request = pages.update_request(current, title=title, body=body, message=message)
        url = self._t.site.v2(f"/{collection}/{current.id}")
        reply = await self._t.call("PUT", url, json_body=request)
        return model.from_json(reply.json_object())

    async def _update(
        self,
        model: type[C],
        collection: Collection,
        content_id: str,
        transform: pages.Transform,
        note: str,
        max_attempts: int,
    ) -> UpdateResult[C]:
        message = pages.edit_message(note)
        conflict: Conflict | None = None
        for attempt in range(1, max(1, max_attempts) + 1):
            current = await self._get(model, collection, content_id, "storage", None, False)
            if current.status != "current":
                raise NotEditable(
                    f"{collection} {content_id} is {current.status}, not current",
                    url=self._t.site.v2(f"/{collection}/{content_id}"),
                )
            title, body = transform(current.title, current.storage)
            if (title, body) == (current.title, current.storage):
                return UpdateResult(current, changed=False, attempts=attempt)
            try:
                written = await self._put(model, collection, current, title, body, message)
            except Conflict as exc:
                conflict = exc
                self._t.log.info(
                    "confluence version conflict, re-reading",
                    content_id=content_id,
                    attempt=attempt,
                    current_version=exc.current_version,
                    provided_version=exc.provided_version,
                )
                continue
            return UpdateResult(written, changed=True, attempts=attempt)
        assert conflict is not None
        raise conflict

    async def _delete(self, collection: Collection, content_id: str, **flags: bool) -> None:
        params = {name: True for name, on in flags.items() if on}
        await self._t.call("DELETE", self._t.site.v2(f"/{collection}/{content_id}"), params=params)
