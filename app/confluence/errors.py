"""Errors of the Confluence client, and how a response becomes one.

::

    ConfluenceError                 (app.errors.ReactorError)     permanent?
    ├── BadRequest          400     malformed request, bad CQL    yes
    ├── Unauthorized        401     missing/expired credentials   yes
    ├── Forbidden           403     scope or permission missing   yes
    ├── NotFound            404     absent, or hidden from us     yes
    ├── Conflict            409     stale version number          no  (update_page re-reads)
    ├── RateLimited         429     points or burst limit         no  (defer by ``delay``)
    ├── ClientError         other 4xx (405, 410, 413, ...)        yes
    ├── ServerError         5xx                                   no
    ├── TransportError      timeout, refused or reset connection  no
    ├── InvalidResponse     2xx whose body is not what we expect  no
    ├── NotEditable         update of content that is not current yes
    └── SelectionNotFound   inline-comment text absent from page  yes

Confluence answers errors with the v2 envelope ``{"errors": [{status, code, title, detail}]}``
(``status`` is sometimes a string), the v1 shape ``{"statusCode", "message"}``, or plain text.
:func:`error_from_response` reads all three. Pure code: no httpx here.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from app.budget.hook import MIN_429_WAIT_SECONDS, Observation
from app.errors import ReactorError

_CONFLICT_VERSIONS = re.compile(
    r"current\s+version:?\s*\[?(\d+)\]?.*?provided\s+version:?\s*\[?(\d+)\]?",
    re.IGNORECASE | re.DOTALL,
)
_V1_CURRENT = re.compile(r"current\s+version\s+is:?\s*(\d+)", re.IGNORECASE)
_MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One entry of the v2 error envelope."""

    status: int | None
    code: str | None
    title: str | None
    detail: str | None


class ConfluenceError(ReactorError):
    """A Confluence call failed. ``permanent`` tells the job layer whether retrying can help."""

    permanent = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        errors: tuple[ErrorItem, ...] = (),
        observation: Observation | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.message = message
        self.trace_id = trace_id
        self.status = status
        self.method = method
        self.url = url
        self.errors = errors
        self.observation = observation
        where = f" ({method} {url})" if method and url else ""
        prefix = f"{status} " if status is not None else ""
        super().__init__(f"{prefix}{message}{where}")

    @property
    def code(self) -> str | None:
        """The first machine-readable error code Confluence gave, e.g. ``CONFLICT``."""
        return next((item.code for item in self.errors if item.code), None)

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (429s, some 503s), when it said."""
        return self.observation.retry_after if self.observation else None


class BadRequest(ConfluenceError):
    pass


class Unauthorized(ConfluenceError):
    pass


class Forbidden(ConfluenceError):
    pass


class NotFound(ConfluenceError):
    """404: the content does not exist *or* the caller may not see it (Confluence hides which)."""


class ClientError(ConfluenceError):
    """Any other 4xx, e.g. 405 on a retired v1 route, 410 Gone, 413 body over 5 MB."""


class Conflict(ConfluenceError):
    """409: the version number sent was not current + 1."""

    permanent = False

    def __init__(
        self,
        message: str,
        *,
        current_version: int | None = None,
        provided_version: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.current_version = current_version
        self.provided_version = provided_version
        super().__init__(message, **kwargs)


class RateLimited(ConfluenceError):
    """429: out of points or over a burst limit. Wait ``delay`` seconds before calling again."""

    permanent = False
    default_delay = 60.0

    @property
    def delay(self) -> float:
        """Seconds to wait: Retry-After, else the time to the reset, else a minute; never
        less than ``MIN_429_WAIT_SECONDS`` (a wait of 0 or a time already past)."""
        obs = self.observation
        if obs is not None and obs.retry_after is not None:
            return max(MIN_429_WAIT_SECONDS, obs.retry_after)
        if obs is not None and obs.reset_epoch is not None:
            return max(MIN_429_WAIT_SECONDS, obs.reset_epoch - time.time())
        return self.default_delay


class ServerError(ConfluenceError):
    permanent = False


class TransportError(ConfluenceError):
    """No usable HTTP response: timeout, refused or reset connection, protocol error."""

    permanent = False


class InvalidResponse(ConfluenceError):
    """A success status with a body we cannot read; usually a proxy or an outage page."""

    permanent = False


class NotEditable(ConfluenceError):
    """update_page/update_blogpost on content whose status is not ``current``."""


class SelectionNotFound(ConfluenceError):
    """The text an inline comment should be anchored to is not (or no longer) on the page."""


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the same call cannot succeed (dead-letter), False when it may."""
    if isinstance(exc, ConfluenceError):
        return exc.permanent
    return False


_BY_STATUS: dict[int, type[ConfluenceError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _as_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_error_body(text: str) -> tuple[ErrorItem, ...]:
    """Read the v2 envelope, the v1 ``{statusCode, message}`` shape, or plain text."""
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        raw_errors = data.get("errors")
        if isinstance(raw_errors, list):
            items = [
                ErrorItem(
                    status=_as_int(entry.get("status")),
                    code=_as_text(entry.get("code")),
                    title=_as_text(entry.get("title")),
                    detail=_as_text(entry.get("detail")),
                )
                for entry in raw_errors
                if isinstance(entry, dict)
            ]
            if items:
                return tuple(items)
        message = _as_text(data.get("message")) or _as_text(data.get("title"))
        if message is not None or "statusCode" in data:
            reason = data.get("reason")
            return (ErrorItem(_as_int(data.get("statusCode")), _as_text(reason), message, None),)
    plain = " ".join(text.split())[:_MAX_TEXT]
    return (ErrorItem(None, None, plain, None),) if plain else ()


def _summary(status: int, items: tuple[ErrorItem, ...]) -> str:
    parts = []
    for item in items:
        text = ": ".join(p for p in (item.code, item.title, item.detail) if p)
        if text:
            parts.append(text)
    return "; ".join(parts)[:_MAX_TEXT] or f"HTTP {status}"


def conflict_versions(items: tuple[ErrorItem, ...]) -> tuple[int | None, int | None]:
    """(current, provided) version numbers from a 409 message, when it names them."""
    for item in items:
        for text in (item.title, item.detail):
            if not text:
                continue
            match = _CONFLICT_VERSIONS.search(text)
            if match:
                return int(match.group(1)), int(match.group(2))
            v1 = _V1_CURRENT.search(text)
            if v1:
                return int(v1.group(1)), None
    return None, None


def error_from_response(
    status: int,
    text: str,
    *,
    method: str,
    url: str,
    observation: Observation | None = None,
    trace_id: str | None = None,
) -> ConfluenceError:
    """The exception for an error response (status >= 400).

    ``trace_id`` is Atlassian's ``ATL-TraceId`` response header: quote it to Atlassian support.
    """
    items = parse_error_body(text)
    message = _summary(status, items)
    common: dict[str, Any] = {
        "status": status,
        "method": method,
        "url": url,
        "errors": items,
        "observation": observation,
        "trace_id": trace_id,
    }
    if status == 409:
        current, provided = conflict_versions(items)
        return Conflict(message, current_version=current, provided_version=provided, **common)
    if status >= 500:
        return ServerError(message, **common)
    cls = _BY_STATUS.get(status, ClientError)
    return cls(message, **common)


def strip_query(url: str) -> str:
    """A URL without its query string, for messages and logs (CQL may hold user text)."""
    return url.split("?", 1)[0]
