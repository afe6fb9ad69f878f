"""Query-parameter parsing with Confluence's 400 envelope for bad values (pure)."""

from __future__ import annotations

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


class Query:
    """A read-only view of a request's query: ``get``, ``getlist`` and typed accessors."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self.items = list(items)

    def get(self, name: str) -> str | None:
        for key, value in self.items:
            if key == name:
                return value
        return None

    def getlist(self, name: str) -> list[str]:
        """Repeated and comma-separated values, both as Confluence accepts them."""
        out: list[str] = []
        for key, value in self.items:
            if key == name:
                out.extend(v for v in value.split(",") if v != "")
        return out

    def integer(
        self, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_param(name, f"Expected an integer, got '{raw}'.") from None
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

    def ids(self, name: str) -> list[str]:
        values = self.getlist(name)
        for value in values:
            if not value.isdigit():
                raise bad_param(name, "Expected numeric ids.")
        return values

    def without(self, *names: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.items if k not in names]


def path_id(raw: str, name: str = "id") -> str:
    """Path ids are int64 in the spec: digits only (attachments may carry an ``att`` prefix)."""
    digits = raw[3:] if raw.startswith("att") else raw
    if not digits.isdigit() or len(digits) > 19:
        raise bad_param(name, "Expected a numeric id.")
    return raw


def sort_key(query: Query, allowed: Sequence[str], default: str) -> tuple[str, bool]:
    """The ``sort`` parameter as (field, descending)."""
    choices = [*allowed, *(f"-{a}" for a in allowed)]
    raw = query.choice("sort", choices, default) or default
    return raw.lstrip("-"), raw.startswith("-")


def as_mapping(items: Mapping[str, str]) -> Query:
    return Query(items.items())
