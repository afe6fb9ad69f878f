"""Built-in reactions, one module each; configured from the rules file or used from code.

Each module exposes a :class:`Builtin`: its name, default events, and ``make(options)`` which
validates the options (raising :class:`OptionError` naming the bad option) and returns the
handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.routing import Handler


class OptionError(ValueError):
    """A built-in reaction's option is invalid; ``option`` names it (None: the whole set)."""

    def __init__(self, option: str | None, message: str) -> None:
        self.option = option
        super().__init__(f"option {option!r}: {message}" if option else message)


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    events: tuple[str, ...]
    make: Callable[[Mapping[str, Any]], Handler]
    doc: str
    latest_only: bool = False  # see Registration.latest_only


def check_options(options: Mapping[str, Any], known: set[str]) -> None:
    for key in options:
        if key not in known:
            raise OptionError(key, f"unknown option (known: {', '.join(sorted(known))})")


def str_list(options: Mapping[str, Any], key: str, default: list[str] | None = None) -> list[str]:
    value = options.get(key, default)
    if value is None:
        raise OptionError(key, "required")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OptionError(key, "must be a string or a list of strings")
    if any(not v.strip() for v in value):
        raise OptionError(key, "entries must not be empty")
    return list(value)
