"""Cursor pagination as Confluence v2 does it (pure).

The cursor is opaque base64 of ``{"id": <last id>, "contentOrder": <field>,
"contentOrderValue": <its value>}``, like the real one; the next page holds the items strictly after
that position in the requested order, so inserts between calls never repeat an item. The next
link is host-relative and keeps the request's other parameters.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from simulator.errors import ApiError
from simulator.params import Query

T = TypeVar("T")
SortValue = str | int


def bad_cursor() -> ApiError:
    return ApiError(
        400,
        "INVALID_REQUEST_PARAMETER",
        "Provided value for 'cursor' is not the correct type. Expected type is Cursor.",
        "The provided cursor was not valid. You can get a new valid cursor by making the original "
        "pagination request again.",
    )


def encode_cursor(item_id: str, order: str, value: SortValue) -> str:
    raw = json.dumps(
        {"id": item_id, "contentOrder": order, "contentOrderValue": value}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str, order: str) -> tuple[SortValue, int]:
    try:
        alphabet = cursor.replace("-", "+").replace("_", "/")
        data = json.loads(base64.b64decode(alphabet.encode(), validate=True))
        value = data["contentOrderValue"]
        item_id = int(str(data["id"]).removeprefix("att"))
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeEncodeError):
        raise bad_cursor() from None
    if data.get("contentOrder") != order or not isinstance(value, str | int):
        raise bad_cursor()
    return value, item_id


def _beyond(key: tuple[SortValue, int], after: tuple[SortValue, int], descending: bool) -> bool:
    try:
        return key < after if descending else key > after
    except TypeError:  # a cursor of another sort made by hand
        raise bad_cursor() from None


def numeric_id(item_id: str) -> int:
    return int(item_id.removeprefix("att"))


@dataclass
class Page:
    """One page of results: the items and the link to the next page, if any."""

    items: list[Any]
    next_link: str | None


def paginate(
    items: Sequence[T],
    *,
    query: Query,
    path: str,
    order: str,
    value: Callable[[T], SortValue],
    ident: Callable[[T], str],
    descending: bool = False,
    default_limit: int = 25,
    max_limit: int = 250,
) -> Page:
    """Sort ``items`` by (value, id), cut one page after the cursor, and build the next link."""
    limit = query.integer("limit", default_limit, 1, max_limit)
    assert limit is not None
    keyed = sorted(items, key=lambda it: (value(it), numeric_id(ident(it))), reverse=descending)
    cursor = query.get("cursor")
    if cursor is not None:
        after = decode_cursor(cursor, order)
        keyed = [
            it for it in keyed if _beyond((value(it), numeric_id(ident(it))), after, descending)
        ]
    chosen = keyed[:limit]
    if len(keyed) <= limit or not chosen:
        return Page(list(chosen), None)
    last = chosen[-1]
    token = encode_cursor(ident(last), order, value(last))
    rest = query.without("cursor")
    # the cursor goes first and unescaped (its "=" padding included), as Confluence sends it
    tail = f"&{urlencode(rest)}" if rest else ""
    return Page(list(chosen), f"{path}?cursor={token}{tail}")


def envelope(results: list[dict[str, Any]], page: Page, base: str) -> dict[str, Any]:
    links: dict[str, str] = {}
    if page.next_link:
        links["next"] = page.next_link
    links["base"] = base
    return {"results": results, "_links": links}


def link_header(page: Page, base: str) -> str | None:
    if not page.next_link:
        return None
    return f'<{page.next_link}>; rel="next", <{base}>; rel="base"'
