"""The sweep's Confluence client: one page of CQL search with its next link, bulk reads by id.

A subclass of :class:`~app.confluence.ConfluenceClient`, so every call is budgeted (the
sweep builds it at :attr:`~app.budget.hook.Priority.RECONCILE`) and authenticated per tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.confluence.client import ConfluenceClient
from app.confluence.models import Content, SearchResult
from app.confluence.pagination import next_link, resolve_next
from app.confluence.transport import Params

SEARCH_PAGE_SIZE = 50
BULK_PAGE_SIZE = 250


class SweepClient(ConfluenceClient):
    """The Confluence client plus one page of CQL search with its next link."""

    async def search_page(
        self, cql: str, next_url: str | None, limit: int = SEARCH_PAGE_SIZE
    ) -> tuple[list[SearchResult], str | None]:
        """One page of ``cql`` (or the page at ``next_url``) and the URL of the next one."""
        if next_url is None:
            params: Params = {"cql": cql, "limit": limit}
            reply = await self._t.call(
                "GET", self._t.site.v1("/search"), params=params, estimate=limit
            )
        else:
            reply = await self._t.call("GET", next_url, estimate=limit)
        link = next_link(reply.headers.get("link"), reply.data)
        site = self._t.site
        following = resolve_next(site.api_root, site.wiki_path, link) if link else None
        return [SearchResult.from_json(r) for r in reply.results()], following

    async def current(self, kind: str, ids: Sequence[str]) -> dict[str, Content]:
        """Pages or blog posts by id as they are now (one call per 250 ids)."""
        found: dict[str, Content] = {}
        for start in range(0, len(ids), BULK_PAGE_SIZE):
            chunk = list(ids[start : start + BULK_PAGE_SIZE])
            items: AsyncIterator[Content]
            if kind == "page":
                items = self.iter_pages(ids=chunk, status=["current", "archived"], limit=250)
            else:
                items = self.iter_blogposts(ids=chunk, status=["current"], limit=250)
            async for item in items:
                found[item.id] = item
        return found

    async def space_keys(self, space_ids: Sequence[str]) -> dict[str, str]:
        """Space id -> key (reactions filter by either; v2 content names only the id)."""
        keys: dict[str, str] = {}
        for start in range(0, len(space_ids), BULK_PAGE_SIZE):
            chunk = list(space_ids[start : start + BULK_PAGE_SIZE])
            async for space in self.iter_spaces(ids=chunk, limit=250):
                keys[space.id] = space.key
        return keys
