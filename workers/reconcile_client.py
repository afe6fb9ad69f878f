"""The sweep's Confluence client: bulk reads by id, one page of the trash at a time (one page
of CQL search is the client's).

A subclass of :class:`~app.confluence.ConfluenceClient`, so every call is budgeted (the
sweep builds it at :attr:`~app.budget.hook.Priority.RECONCILE`) and authenticated per tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.confluence.client import ConfluenceClient
from app.confluence.errors import InvalidResponse
from app.confluence.models import Content, Page
from app.confluence.transport import Params

SEARCH_PAGE_SIZE = 50
BULK_PAGE_SIZE = 250


class SweepClient(ConfluenceClient):
    """The Confluence client plus bulk reads of current content and space keys by id."""

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

    async def trash_page(
        self, next_url: str | None, *, limit: int = BULK_PAGE_SIZE
    ) -> tuple[list[Page], str | None]:
        """One page of the trashed pages (v2 ``GET /pages?status=trashed``) and the URL of the
        next (None at the end): ``next_url`` is what the previous page returned, None for the
        first. Costs 1 point plus 1 per page listed."""
        params: Params = {"status": "trashed", "limit": limit}
        items, following = await self._t.page(
            self._t.site.v2("/pages"), params, next_url, limit=limit
        )
        if following is not None and following == next_url:
            raise InvalidResponse("pagination loops back to the page just read", url=following)
        return [Page.from_json(item) for item in items], following
