"""The sweep's Confluence client: bulk reads by id (one page of CQL search is the client's).

A subclass of :class:`~app.confluence.ConfluenceClient`, so every call is budgeted (the
sweep builds it at :attr:`~app.budget.hook.Priority.RECONCILE`) and authenticated per tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.confluence.client import ConfluenceClient
from app.confluence.models import Content

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
