"""The Confluence REST client: one object per (site, job), over a shared pooled HTTP client.

::

    http = new_http_client()                      # once per process, closed by its owner
    site = Site.forge(tenant=t, api_base_url=url, token=provider)
    client = ConfluenceClient(http, site, budget, event_id=event.id, logger=log)
    page = await client.get_page("123")
    await client.update_page("123", lambda title, body: (title, body + FOOTER))

Every call reserves points from ``budget`` first and settles them after (see
:mod:`app.confluence.transport`); errors are the classes of :mod:`app.confluence.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import structlog

from app.budget.hook import BudgetHook, Priority
from app.confluence.comments import CommentsAPI
from app.confluence.content import ContentAPI
from app.confluence.directory import DirectoryAPI
from app.confluence.site import Site
from app.confluence.transport import Logger, Transport

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def new_http_client(
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    max_connections: int = 100,
    max_keepalive_connections: int = 20,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The pooled HTTP client entry files create once and share between Confluence clients."""
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
        ),
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": "confluence-reactor"},
    )


class ConfluenceClient(ContentAPI, CommentsAPI, DirectoryAPI):
    """Every operation of the API guide, budgeted, authenticated and correlated."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        site: Site,
        budget: BudgetHook,
        *,
        event_id: str | None = None,
        logger: Logger | None = None,
        priority: Priority = Priority.REACTION,
        timeout: httpx.Timeout | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._t = Transport(
            http,
            site,
            budget,
            logger=logger if logger is not None else structlog.get_logger("app.confluence"),
            event_id=event_id,
            priority=priority,
            timeout=timeout,
            clock=clock,
        )

    @property
    def site(self) -> Site:
        return self._t.site

    @property
    def event_id(self) -> str | None:
        return self._t.event_id
