"""One Confluence call: budget, authentication, correlation header, errors, logging.

Every request goes through :meth:`Transport.call`:

1. ``await budget.reserve(tenant, estimate, priority)`` (may raise ``BudgetExhausted``);
2. the request, signed by the site's ``httpx.Auth``, carrying ``X-Reactor-Event-Id``;
3. ``await budget.settle(reservation, observation)`` with the rate-limit headers and the
   counted cost, whatever happened (a transport failure settles with ``status=0``);
4. an error status becomes its :mod:`app.confluence.errors` exception.

:meth:`Transport.iterate` walks a cursor-paginated list, one budgeted call per page.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from app.budget.hook import BudgetHook, Observation, Priority, Reservation
from app.confluence import cost
from app.confluence.errors import (
    InvalidResponse,
    TransportError,
    error_from_response,
    strip_query,
)
from app.confluence.pagination import next_link, resolve_next
from app.confluence.ratelimit import observe
from app.confluence.site import Site

EVENT_HEADER = "X-Reactor-Event-Id"
NO_RESPONSE = 0

R = TypeVar("R")
Params = Mapping[str, str | int | bool | Sequence[str] | None]


class Logger(Protocol):
    """The part of a structlog bound logger the client uses."""

    def bind(self, **kw: Any) -> Logger: ...
    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: status, parsed JSON (None when empty), headers."""

    status: int
    data: Any
    headers: httpx.Headers

    def json_object(self) -> dict[str, Any]:
        if not isinstance(self.data, dict):
            raise InvalidResponse("expected a JSON object from Confluence", status=self.status)
        return self.data

    def results(self) -> list[Any]:
        results = self.json_object().get("results")
        if not isinstance(results, list):
            raise InvalidResponse("list response without 'results'", status=self.status)
        return results


def _clean(params: Params | None) -> dict[str, str | int | bool] | None:
    """Drop unset parameters; lists go comma-separated, as the v2 reference documents them."""
    if params is None:
        return None
    query: dict[str, str | int | bool] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, str | int | bool):
            query[name] = value
        elif value:
            query[name] = ",".join(value)
    return query


class Transport:
    """The HTTP edge of the client; shared by every resource method."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        site: Site,
        budget: BudgetHook,
        *,
        logger: Logger,
        event_id: str | None = None,
        priority: Priority = Priority.REACTION,
        timeout: httpx.Timeout | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.site = site
        self.budget = budget
        self.event_id = event_id
        self.priority = priority
        self.timeout = timeout
        self.clock = clock
        self.log = logger.bind(tenant=site.tenant, event_id=event_id)

    async def call(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        estimate: int | None = None,
        per_object: int = cost.CORE_OBJECT,
    ) -> Reply:
        """Send one request through the budget; return its reply or raise its error."""
        planned = cost.estimate(method) if estimate is None else estimate
        reservation = await self.budget.reserve(self.site.tenant, planned, self.priority)
        headers = {"Accept": "application/json"}
        if self.event_id:
            headers[EVENT_HEADER] = self.event_id
        started = time.monotonic()
        try:
            response = await self.http.request(
                method,
                url,
                params=_clean(params),
                json=json_body,
                headers=headers,
                auth=self.site.auth,
                timeout=self.timeout if self.timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.RequestError as exc:
            await self._settle(reservation, Observation(status=NO_RESPONSE))
            self.log.warning(
                "confluence call failed", method=method, url=strip_query(url), error=repr(exc)
            )
            raise TransportError(
                f"{type(exc).__name__}: {exc}", method=method, url=strip_query(url)
            ) from exc
        except BaseException:
            await self._settle(reservation, Observation(status=NO_RESPONSE))
            raise
        return await self._finish(method, url, response, reservation, per_object, started)

    async def _finish(
        self,
        method: str,
        url: str,
        response: httpx.Response,
        reservation: Reservation,
        per_object: int,
        started: float,
    ) -> Reply:
        status = response.status_code
        data: Any = None
        invalid: InvalidResponse | None = None
        if status < 300 and response.content.strip():
            try:
                data = json.loads(response.content)
            except ValueError:
                invalid = InvalidResponse(
                    "response body is not JSON", status=status, method=method, url=strip_query(url)
                )
        spent = cost.actual(method, status, data, per_object=per_object)
        try:
            observation = observe(
                status, response.headers.multi_items(), now=self.clock(), actual_cost=spent
            )
        except Exception as exc:
            # Headers we cannot read must not leave the call unsettled (its estimate reserved
            # until the in-flight reaper) nor fail a call that was made: settle what we know.
            self.log.warning(
                "confluence rate-limit headers unreadable",
                method=method,
                url=strip_query(url),
                error=repr(exc),
            )
            observation = Observation(status=status, actual_cost=spent)
        await self._settle(reservation, observation)
        fields = {
            "method": method,
            "url": strip_query(url),
            "status": status,
            "ms": round((time.monotonic() - started) * 1000, 1),
            "cost": spent,
        }
        if status >= 400:
            error = error_from_response(
                status,
                response.text,
                method=method,
                url=strip_query(url),
                observation=observation,
                trace_id=response.headers.get("atl-traceid"),
            )
            self.log.warning(
                "confluence error",
                code=error.code,
                error=error.message,
                trace_id=error.trace_id,
                **fields,
            )
            raise error
        if invalid is not None:
            self.log.warning("confluence invalid response", **fields)
            raise invalid
        if method.upper() == "GET":
            self.log.debug("confluence call", **fields)
        else:
            self.log.info("confluence call", **fields)
        return Reply(status=status, data=data, headers=response.headers)

    async def _settle(self, reservation: Reservation, observation: Observation) -> None:
        await self.budget.settle(reservation, observation)

    async def iterate(
        self, url: str, params: Params | None, *, limit: int, per_object: int = cost.CORE_OBJECT
    ) -> AsyncIterator[Any]:
        """Every item of a paginated list, following each next link as Confluence wrote it."""
        planned = cost.estimate("GET", objects=limit, per_object=per_object)
        followed: set[str] = set()
        query: Params | None = params
        while True:
            reply = await self.call(
                "GET", url, params=query, estimate=planned, per_object=per_object
            )
            for item in reply.results():
                yield item
            link = next_link(reply.headers.get("link"), reply.data)
            if link is None:
                return
            url = resolve_next(self.site.api_root, self.site.wiki_path, link)
            if url in followed:
                raise InvalidResponse("pagination loops back to a page already read", url=url)
            followed.add(url)
            query = None

    async def page(
        self, url: str, params: Params, next_url: str | None, *, limit: int
    ) -> tuple[list[Any], str | None]:
        """One page of a paginated list, for callers that keep their place between runs:
        ``url`` with ``params`` when ``next_url`` is None (the first page), else ``next_url`` as
        the previous page returned it. Returns the page's items and the next page's URL (None
        at the end)."""
        planned = cost.estimate("GET", objects=limit)  # the request's point and each item's
        if next_url is None:
            reply = await self.call("GET", url, params=params, estimate=planned)
        else:
            reply = await self.call("GET", next_url, estimate=planned)
        link = next_link(reply.headers.get("link"), reply.data)
        following = resolve_next(self.site.api_root, self.site.wiki_path, link) if link else None
        return reply.results(), following

    async def iterate_as(
        self,
        read: Callable[[Any], R],
        url: str,
        params: Params | None,
        limit: int,
        *,
        per_object: int = cost.CORE_OBJECT,
    ) -> AsyncIterator[R]:
        """:meth:`iterate`, each item read into a typed result."""
        async for item in self.iterate(url, params, limit=limit, per_object=per_object):
            yield read(item)
