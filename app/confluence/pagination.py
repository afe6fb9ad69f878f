"""Cursor pagination: finding the next page's URL and joining it to the right root. Pure code.

v2 lists answer with ``Link: </wiki/api/v2/pages?cursor=...&limit=100>; rel="next"`` and the
same path in the body's ``_links.next``. The path already holds ``/wiki``, so it is joined to
the site's API root (scheme, host and, through the Atlassian gateway, the
``/ex/confluence/<cloudId>`` prefix), never to ``_links.base`` (which would double ``/wiki``).
v1 search answers with ``_links.next`` relative to the base (``/rest/api/search?...``), which
has no ``/wiki``; :func:`resolve_next` adds it. The cursor is never rebuilt or re-encoded: the
URL Confluence gave is followed as is (its cursor may hold ``=`` and sit mid-query).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_PARAM = re.compile(r';\s*([^=;,\s]+)\s*=\s*"?([^";,]*)"?')


def parse_link_header(value: str | None) -> dict[str, str]:
    """``rel`` -> target of each link in an RFC 8288 ``Link`` header."""
    links: dict[str, str] = {}
    for match in _LINK.finditer(value or ""):
        target, params = match.group(1).strip(), match.group(2)
        for key, rel in _PARAM.findall(params):
            if key.lower() == "rel":
                for name in rel.split():
                    links.setdefault(name.lower(), target)
    return links


def next_link(link_header: str | None, body: Any) -> str | None:
    """The next page's URL from the ``Link`` header, else from ``_links.next``; None at the end."""
    target = parse_link_header(link_header).get("next")
    if target:
        return target
    if isinstance(body, Mapping):
        links = body.get("_links")
        if isinstance(links, Mapping):
            candidate = links.get("next")
            if isinstance(candidate, str) and candidate:
                return candidate
    return None


def resolve_next(api_root: str, wiki_path: str, link: str) -> str:
    """The absolute URL of a next link, on our own site only.

    ``api_root`` is scheme + host (+ gateway prefix), ``wiki_path`` usually ``/wiki``. A link on
    another host keeps only its path and query: credentials never follow a link off-site.
    """
    root = api_root.rstrip("/")
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        if link.startswith(root + "/"):
            return link
        link = parts.path + (f"?{parts.query}" if parts.query else "")
    if not link.startswith("/"):
        link = "/" + link
    root_path = urlsplit(root).path
    if root_path and link.startswith(root_path + "/"):
        link = link[len(root_path) :]
    if wiki_path and (link == wiki_path or link.startswith(wiki_path + "/")):
        return root + link
    return root + wiki_path + link


def check_limit(limit: int, maximum: int = 250) -> int:
    """A page size Confluence accepts (1..250, or 1..50 for versions with a body)."""
    if not 1 <= limit <= maximum:
        raise ValueError(f"limit must be between 1 and {maximum}, not {limit}")
    return limit
