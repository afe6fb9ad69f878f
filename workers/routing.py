"""Reaction registry: ``@router.on("page.updated", space="DEV", title=r"^RFC")``, pure matching.

A :class:`Router` holds registrations (event patterns, filters, handler); routers compose with
:meth:`Router.include`. Matching needs nothing but the event, except the label filter on events
that do not name a label: then :meth:`Filters.match` answers ``None`` ("give me the content's
labels") and the dispatcher asks Confluence once.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.atlassian.events import EVENT_TYPES, Event

if TYPE_CHECKING:
    from workers.context import ReactionContext

Handler = Callable[[Event, "ReactionContext"], Awaitable[None]]
FilterValue = str | Collection[str] | None


def _set(value: FilterValue) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def _lower(values: frozenset[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(v.lower() for v in values)


def check_event_pattern(pattern: str) -> str:
    """``pattern`` if it names known events (``page.updated``, ``page.*``, ``*``).

    Raises ValueError otherwise.
    """
    if pattern == "*" or pattern in EVENT_TYPES:
        return pattern
    if pattern.endswith(".*") and any(t.startswith(pattern[:-1]) for t in EVENT_TYPES):
        return pattern
    raise ValueError(f"unknown event type {pattern!r} (known: {', '.join(EVENT_TYPES)})")


def is_async(handler: object) -> bool:
    """Whether calling ``handler`` gives a coroutine: an ``async def`` function or method, a
    ``functools.partial`` of one, or an object whose ``__call__`` is one."""
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - the method itself
    return inspect.iscoroutinefunction(handler) or (
        not inspect.isroutine(handler) and inspect.iscoroutinefunction(call)
    )


def _handler_name(handler: object) -> str:
    name = str(getattr(handler, "__name__", "handler"))
    return name if name.isidentifier() else "handler"


def event_matches(pattern: str, type_: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return type_.startswith(pattern[:-1])
    return pattern == type_


# What compiling a regular expression raises for a bad one: a syntax error, a repeat count
# too large for the engine ("a{99999999999}"), or nesting too deep for the compiler.
REGEX_ERRORS = (re.error, OverflowError, RecursionError)


@dataclass(frozen=True, slots=True)
class Filters:
    """Conditions on an event; every given one must hold (values within one are alternatives)."""

    tenants: frozenset[str] | None = None
    spaces: frozenset[str] | None = None  # space keys or ids
    title: re.Pattern[str] | None = None
    labels: frozenset[str] | None = None  # any of these
    authors: frozenset[str] | None = None  # actor account ids
    content_types: frozenset[str] | None = None

    @classmethod
    def build(
        cls,
        *,
        tenant: FilterValue = None,
        space: FilterValue = None,
        title: str | re.Pattern[str] | None = None,
        label: FilterValue = None,
        author: FilterValue = None,
        content_type: FilterValue = None,
    ) -> Filters:
        try:
            pattern = re.compile(title) if isinstance(title, str) else title
        except REGEX_ERRORS as exc:
            raise ValueError(f"title: invalid regular expression {title!r}: {exc}") from None
        return cls(
            tenants=_set(tenant),
            spaces=_set(space),
            title=pattern,
            # Confluence keeps labels in lower case (``RFC`` is stored as ``rfc``)
            labels=_lower(_set(label)),
            authors=_set(author),
            content_types=_set(content_type),
        )

    def match(self, event: Event, labels: Collection[str] | None = None) -> bool | None:
        """True/False, or None when only the content's labels (not given) can decide."""
        if self.tenants is not None and event.tenant not in self.tenants:
            return False
        if self.spaces is not None and not (
            (event.space_key is not None and event.space_key in self.spaces)
            or (event.space_id is not None and event.space_id in self.spaces)
        ):
            return False
        if self.title is not None and (event.title is None or not self.title.search(event.title)):
            return False
        if self.authors is not None and event.actor not in self.authors:
            return False
        if self.content_types is not None and event.content_type not in self.content_types:
            return False
        if self.labels is None:
            return True
        if event.label is not None and event.label.lower() in self.labels:
            return True
        if labels is None:
            return None
        return not self.labels.isdisjoint(label.lower() for label in labels)


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    events: tuple[str, ...]
    filters: Filters
    handler: Handler
    dry_run: bool | None = None  # None: follow the global setting
    options: dict[str, Any] = field(default_factory=dict, compare=False)
    # Needs only the content's latest state: a queued older event may be skipped for a newer.
    latest_only: bool = False

    def match(self, event: Event, labels: Collection[str] | None = None) -> bool | None:
        if not any(event_matches(p, event.type) for p in self.events):
            return False
        return self.filters.match(event, labels)


class Router:
    """An ordered set of reaction registrations."""

    def __init__(self) -> None:
        self._entries: list[Registration | Router] = []  # in the order they were added

    def on(
        self,
        *events: str,
        name: str | None = None,
        dry_run: bool | None = None,
        latest_only: bool = False,
        tenant: FilterValue = None,
        space: FilterValue = None,
        title: str | re.Pattern[str] | None = None,
        label: FilterValue = None,
        author: FilterValue = None,
        content_type: FilterValue = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated ``async def handler(event, ctx)`` for ``events``."""
        filters = Filters.build(
            tenant=tenant,
            space=space,
            title=title,
            label=label,
            author=author,
            content_type=content_type,
        )

        def decorator(handler: Handler) -> Handler:
            label_ = name or f"{handler.__module__}.{handler.__qualname__}"
            self.add(Registration(label_, events, filters, handler, dry_run, {}, latest_only))
            return handler

        return decorator

    def add(self, registration: Registration) -> None:
        if not registration.events:
            raise ValueError(f"{registration.name}: name at least one event type")
        for pattern in registration.events:
            check_event_pattern(pattern)
        if not is_async(registration.handler):
            raise TypeError(
                f"{registration.name}: a handler must be an async function "
                f"(`async def {_handler_name(registration.handler)}(event, ctx)`)"
            )
        self._entries.append(registration)

    def include(self, router: Router) -> None:
        """Compose: ``router``'s registrations (also those added later) become ours."""
        if router is self:
            raise ValueError("a router cannot include itself")
        self._entries.append(router)

    def __iter__(self) -> Iterator[Registration]:
        for entry in self._entries:
            if isinstance(entry, Router):
                yield from entry
            else:
                yield entry

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def latest_only(self, older: Event, newer_type: str) -> bool:
        """Whether ``older`` may be skipped because a ``newer_type`` event of its content waits:
        every reaction it would run needs only the latest state and runs for the newer too."""
        for reg in self:
            if reg.match(older) is False:  # None (labels unknown) counts as a possible match
                continue
            if not reg.latest_only or not any(event_matches(p, newer_type) for p in reg.events):
                return False
        return True

    def candidates(self, event: Event) -> list[tuple[Registration, bool | None]]:
        """Registrations that match (True) or may match once labels are known (None)."""
        found: list[tuple[Registration, bool | None]] = []
        for reg in self:
            verdict = reg.match(event)
            if verdict is not False:
                found.append((reg, verdict))
        return found
