"""Query-parameter parsing with Confluence's 400 envelope for bad values (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from simulator.errors import bad_param

BODY_FORMATS_SINGLE = (
    "storage",
    "atlas_doc_format",
    "view",
    "export_view",
    "anonymous_export_view",
    "styled_view",
    "editor",
)
BODY_FORMATS_BULK = ("storage", "atlas_doc_format")
# The spec's integers, written as a Java backend reads them, ASCII digits only: no "+", no
# "_", no spaces, no other scripts' digits (Python's int() takes all of these).
_INTEGER = re.compile(r"-?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
INT64_MAX = 2**63 - 1


def int64_id(raw: str) -> str | None:
    """The id ``raw`` names if it is an int64 of ASCII digits (``007`` names ``7``), else None."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return str(value) if value <= INT64_MAX else None


class Query:
    """A read-only view of a request's query: ``get``, ``getlist`` and typed accessors."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self.items = list(items)

    def get(self, name: str) -> str | None:
        for key, value in self.items:
            if key == name:
                return value
        return None

    def getlist(self, name: str, max_items: int | None = None) -> list[str]:
        """Repeated and comma-separated values, both as Confluence accepts them; more than the
        spec's ``maxItems`` is 400."""
        out: list[str] = []
        for key, value in self.items:
            if key == name:
                out.extend(v for v in value.split(",") if v != "")
        if max_items is not None and len(out) > max_items:
            raise bad_param(name, f"At most {max_items} values are allowed.")
        return out

    def integer(
        self, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        if not _INTEGER.fullmatch(raw):
            raise bad_param(name, f"Expected an integer, got '{raw}'.")
        value = int(raw)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise bad_param(name, f"Must be between {lo} and {hi}.")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise bad_param(name, f"Expected true or false, got '{raw}'.")

    def choice(self, name: str, allowed: Sequence[str], default: str | None = None) -> str | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        if raw not in allowed:
            raise bad_param(name, f"Allowed values: {', '.join(allowed)}.")
        return raw

    def choices(self, name: str, allowed: Sequence[str], default: Sequence[str]) -> list[str]:
        values = self.getlist(name)
        for value in values:
            if value not in allowed:
                raise bad_param(name, f"Allowed values: {', '.join(allowed)}.")
        return values or list(default)

    def ids(self, name: str, max_items: int | None = None) -> list[str]:
        """A list of int64 ids (400 for anything else), each as the id it names."""
        out: list[str] = []
        for value in self.getlist(name, max_items):
            canonical = int64_id(value)
            if canonical is None:
                raise bad_param(name, "Expected numeric ids.")
            out.append(canonical)
        return out

    def without(self, *names: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.items if k not in names]


def path_id(raw: str, name: str = "id", *, attachment: bool = False) -> str:
    """Path ids are int64 in the spec (400 otherwise), answered as the id they name; an
    attachment's is a string of the pattern ``(att)?[0-9]+``, kept as given."""
    if attachment:
        digits = raw.removeprefix("att")
        if not _DIGITS.fullmatch(digits) or len(digits) > 19:
            raise bad_param(name, "Expected an attachment id.")
        return raw
    canonical = int64_id(raw)
    if canonical is None:
        raise bad_param(name, "Expected a numeric id.")
    return canonical


def sort_key(query: Query, allowed: Sequence[str], default: str) -> tuple[str, bool]:
    """The ``sort`` parameter as (field, descending)."""
    choices = [*allowed, *(f"-{a}" for a in allowed)]
    raw = query.choice("sort", choices, default) or default
    return raw.lstrip("-"), raw.startswith("-")


def as_mapping(items: Mapping[str, str]) -> Query:
    return Query(items.items())
