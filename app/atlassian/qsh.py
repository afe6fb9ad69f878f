"""Atlassian's query string hash (QSH): the canonical request a Connect JWT is bound to.

Pure functions, no I/O. The algorithm (Atlassian ``atlassian-jwt`` ``HttpRequestCanonicalizer``)::

    canonical-request = METHOD '&' canonical-path '&' canonical-query
    qsh               = hex(sha256(utf8(canonical-request)))

* method: upper-cased.
* path: the raw (not re-decoded) request path relative to the app's or the tenant's base URL
  path; empty means ``/``; every ``&`` becomes ``%26``; a leading ``/`` is added if missing and
  one trailing ``/`` is removed unless it is the only character.
* query: form-decoded (``+`` is a space), the ``jwt`` parameter dropped, names and values
  re-encoded keeping only ``A-Z a-z 0-9 - . _ ~``; repeated names become one ``name=v1,v2``
  entry whose values are sorted by their decoded text (a long-standing quirk of the reference
  implementation), entries sorted by ``name + ' ' + values``; valueless ``a`` is ``a=``.

Strings are compared the way Java and JavaScript compare them (UTF-16 code units), which
differs from Python's code-point order only for characters outside the Basic Multilingual
Plane.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlsplit

CONTEXT_QSH = "context-qsh"
"""The fixed ``qsh`` of context tokens, which are not bound to any request."""

JWT_PARAM = "jwt"


def percent_encode(text: str) -> str:
    """Encode as Java's ``JwtUtil.percentEncode``: only RFC 3986 unreserved characters stay."""
    return quote(text, safe="~")


def _utf16_key(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def canonical_method(method: str) -> str:
    return method.upper()


def canonical_path(path: str, base_path: str = "") -> str:
    """The path part of the canonical request; ``base_path`` is stripped from its front."""
    base = base_path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base) :]
    if not path:
        return "/"
    path = path.replace("&", "%26")
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def _group(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if name == JWT_PARAM:
            continue
        grouped.setdefault(name, []).append(value)
    return grouped


def parse_query(query: str) -> dict[str, list[str]]:
    """Form-decode a raw query string into name -> values, in order of appearance."""
    return _group(parse_qsl(query, keep_blank_values=True))


def canonical_query(query: str | Mapping[str, Sequence[str]]) -> str:
    """The query part of the canonical request, from a raw query string or decoded params."""
    if isinstance(query, str):
        grouped = parse_query(query)
    else:
        grouped = _group((name, value) for name, values in query.items() for value in values)
    entries: list[tuple[str, str]] = []
    for name, values in grouped.items():
        encoded_name = percent_encode(name)
        encoded_values = ",".join(percent_encode(v) for v in sorted(values, key=_utf16_key))
        entries.append((f"{encoded_name} {encoded_values}", f"{encoded_name}={encoded_values}"))
    entries.sort(key=lambda entry: entry[0])
    return "&".join(entry for _, entry in entries)


def canonical_request(
    method: str,
    path: str,
    query: str | Mapping[str, Sequence[str]],
    *,
    base_path: str = "",
) -> str:
    """``METHOD&path&query`` for a raw path (relative to ``base_path``) and a query.

    ``query`` is either the raw query string (without ``?``) or a mapping of decoded names to
    decoded values. The ``jwt`` parameter is ignored either way.
    """
    return "&".join(
        (canonical_method(method), canonical_path(path, base_path), canonical_query(query))
    )


def hash_canonical_request(canonical: str) -> str:
    """Hex SHA-256 of the UTF-8 canonical request."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def base_path_of(base_url: str | None) -> str:
    """The path of a base URL such as ``https://site.atlassian.net/wiki`` -> ``/wiki``."""
    if not base_url:
        return ""
    return urlsplit(base_url).path.rstrip("/")


def split_url(url: str) -> tuple[str, str]:
    """``(raw path, raw query)`` of an absolute URL or of a request target such as ``/p?q``.

    A request target is split by hand: ``urlsplit`` would read ``//host/p`` as a host.
    """
    if url.startswith("/"):
        path, _, query = url.partition("#")[0].partition("?")
        return path, query
    parts = urlsplit(url)
    return parts.path, parts.query


def canonical_request_for_url(method: str, url: str, base_url: str | None = None) -> str:
    """The canonical request of an absolute or relative URL, relative to ``base_url``'s path."""
    path, query = split_url(url)
    return canonical_request(method, path, query, base_path=base_path_of(base_url))


@lru_cache(maxsize=2048)
def query_string_hash(method: str, url: str, base_url: str | None = None) -> str:
    """The ``qsh`` claim for ``method`` on ``url`` (path relative to ``base_url``'s path).

    Memoised (bounded): webhooks arrive on a handful of URLs, so the hot path rarely
    canonicalises at all.
    """
    return hash_canonical_request(canonical_request_for_url(method, url, base_url))
