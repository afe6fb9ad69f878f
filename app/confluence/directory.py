"""Spaces, attachments, labels, and v1 CQL content and user search."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.confluence import cost, pages
from app.confluence.errors import NotFound
from app.confluence.models import Attachment, Label, SearchResult, Space, User
from app.confluence.pagination import check_limit
from app.confluence.transport import Params, Transport

ATTACHMENT_PAGE_SIZE = 50


class DirectoryAPI:
    """Operations on spaces, attachments, labels and search; mixed into the client."""

    _t: Transport

    # -- spaces -----------------------------------------------------------------------------

    def iter_spaces(
        self,
        *,
        ids: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        type: str | None = None,
        status: str | None = None,
        labels: Sequence[str] | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Space]:
        """Spaces the caller may see (GET /spaces), sorted by id unless ``sort`` says otherwise."""
        params = {
            "ids": ids,
            "keys": keys,
            "type": type,
            "status": status,
            "labels": labels,
            "sort": sort,
            "limit": check_limit(limit),
        }
        return self._t.iterate_as(Space.from_json, self._t.site.v2("/spaces"), params, limit)

    async def get_space(self, space_id: str, *, description_format: str | None = None) -> Space:
        url = self._t.site.v2(f"/spaces/{space_id}")
        reply = await self._t.call("GET", url, params={"description-format": description_format})
        return Space.from_json(reply.json_object())

    async def space_by_key(self, key: str) -> Space:
        """The space with ``key`` (v2 writes need the numeric space id, not the key)."""
        async for space in self.iter_spaces(keys=[key], limit=1):
            return space
        raise NotFound(f"no space with key {key!r}", status=None, url=self._t.site.v2("/spaces"))

    async def create_space(
        self,
        name: str,
        *,
        key: str | None = None,
        alias: str | None = None,
        description: str = "",
    ) -> Space:
        request = pages.create_space_request(
            name=name, key=key, alias=alias, description=description
        )
        reply = await self._t.call("POST", self._t.site.v2("/spaces"), json_body=request)
        return Space.from_json(reply.json_object())

    # -- attachments ------------------------------------------------------------------------

    def iter_attachments(
        self,
        *,
        page_id: str | None = None,
        filename: str | None = None,
        media_type: str | None = None,
        status: Sequence[str] | None = None,
        sort: str | None = None,
        limit: int = ATTACHMENT_PAGE_SIZE,
    ) -> AsyncIterator[Attachment]:
        """All attachments, or a page's (GET /attachments, GET /pages/{id}/attachments)."""
        path = f"/pages/{page_id}/attachments" if page_id else "/attachments"
        params = {
            "filename": filename,
            "mediaType": media_type,
            "status": status,
            "sort": sort,
            "limit": check_limit(limit),
        }
        return self._t.iterate_as(Attachment.from_json, self._t.site.v2(path), params, limit)

    async def get_attachment(self, attachment_id: str) -> Attachment:
        reply = await self._t.call("GET", self._t.site.v2(f"/attachments/{attachment_id}"))
        return Attachment.from_json(reply.json_object())

    async def delete_attachment(self, attachment_id: str, *, purge: bool = False) -> None:
        """Trash an attachment; ``purge`` removes a trashed one for good.

        Reads accept ``att123`` or ``123``; the delete operation is documented with the numeric
        id only, so the ``att`` prefix is dropped here.
        """
        params = {"purge": True} if purge else None
        url = self._t.site.v2(f"/attachments/{attachment_id.removeprefix('att')}")
        await self._t.call("DELETE", url, params=params)

    # -- labels -----------------------------------------------------------------------------

    def iter_labels(
        self,
        *,
        page_id: str | None = None,
        blog_post_id: str | None = None,
        space_id: str | None = None,
        prefix: str | None = None,
        sort: str | None = None,
        limit: int = 25,
    ) -> AsyncIterator[Label]:
        """All labels, or those of one page, blog post or space."""
        if sum(1 for given in (page_id, blog_post_id, space_id) if given) > 1:
            raise ValueError("labels of a page, a blog post or a space, not several")
        if page_id:
            path = f"/pages/{page_id}/labels"
        elif blog_post_id:
            path = f"/blogposts/{blog_post_id}/labels"
        elif space_id:
            path = f"/spaces/{space_id}/labels"
        else:
            path = "/labels"
        params = {"prefix": prefix, "sort": sort, "limit": check_limit(limit)}
        return self._t.iterate_as(Label.from_json, self._t.site.v2(path), params, limit)

    # -- v1 search --------------------------------------------------------------------------

    def search(
        self,
        cql: str,
        *,
        limit: int = 25,
        excerpt: str | None = None,
        expand: Sequence[str] | None = None,
        include_archived_spaces: bool | None = None,
    ) -> AsyncIterator[SearchResult]:
        """CQL content search (v1 GET /wiki/rest/api/search), following ``_links.next``."""
        params: Params = {
            "cql": cql,
            "limit": check_limit(limit, 1000),
            "excerpt": excerpt,
            "expand": ",".join(expand) if expand else None,
            "includeArchivedSpaces": include_archived_spaces,
        }
        url = self._t.site.v1("/search")
        return self._t.iterate_as(SearchResult.from_json, url, params, limit)

    async def search_page(
        self, cql: str, next_url: str | None = None, *, limit: int = 25
    ) -> tuple[list[SearchResult], str | None]:
        """One page of a CQL search and the URL of the next one (None at the end).

        For callers that keep their place between runs (a sweep's cursor): ``next_url`` is
        what the previous page returned, ``None`` for the first page.
        """
        params: Params = {"cql": cql, "limit": check_limit(limit, 1000)}
        results, following = await self._t.page(
            self._t.site.v1("/search"), params, next_url, limit=limit
        )
        return [SearchResult.from_json(r) for r in results], following

    def search_users(self, cql: str, *, limit: int = 25) -> AsyncIterator[User]:
        """User search by CQL (``user.fullname~"ada"``); users cost two points each."""
        params: Params = {"cql": cql, "limit": check_limit(limit, 1000)}
        url = self._t.site.v1("/search/user")
        return self._t.iterate_as(
            User.from_search_result, url, params, limit, per_object=cost.IDENTITY_OBJECT
        )
