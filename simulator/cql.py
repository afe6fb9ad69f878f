"""A subset of the Confluence Query Language (pure): parse, then match documents.

Fields: type, space, title, text, label, creator, created, lastmodified, parent, ancestor, id.
Operators: ``=``, ``!=``, ``~``, ``!~``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``not in``;
``and``, ``or``, ``not`` and parentheses; ``order by field [asc|desc], ...``. Dates are
``yyyy-mm-dd``, ``yyyy/mm/dd`` (optionally with `` hh:mm``) or ``now("-4w")`` style offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FIELDS = (
    "type",
    "space",
    "title",
    "text",
    "label",
    "creator",
    "created",
    "lastmodified",
    "parent",
    "ancestor",
    "id",
    "contributor",
)
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|!~|>=|<=|=|~|>|<)'
    r"|(?P<punct>[(),])|(?P<word>[A-Za-z0-9_.:\-+/@*]+))"
)
_OFFSET = re.compile(r"^([+-]?\d+)([smhdwMy])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]


class CqlError(ValueError):
    """The query does not parse; the message says where."""


@dataclass
class Query:
    match: Predicate
    order: list[tuple[str, bool]]  # (field, descending)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CqlError(f"Could not parse cql at position {pos}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, now: datetime, current_user: str | None) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.now = now
        self.current_user = current_user

    def peek(self, word: str | None = None) -> str | None:
        if self.i >= len(self.toks):
            return None
        value = self.toks[self.i][1]
        if word is not None and (self.toks[self.i][0] != "word" or value.lower() != word):
            return None
        return value

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise CqlError("Unexpected end of cql")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        _, got = self.take()
        if got.lower() != value:
            raise CqlError(f"Expected {value!r} but found {got!r}")

    def parse(self) -> Query:
        match = self.disjunction()
        order: list[tuple[str, bool]] = []
        if self.peek("order"):
            self.take()
            self.expect("by")
            while True:
                field = self.take()[1].lower()
                if field not in FIELDS:
                    raise CqlError(f"Cannot order by {field!r}")
                desc = False
                if self.peek("desc") or self.peek("asc"):
                    desc = self.take()[1].lower() == "desc"
                order.append((field, desc))
                if self.peek() != ",":
                    break
                self.take()
        if self.i != len(self.toks):
            raise CqlError(f"Unexpected {self.toks[self.i][1]!r}")
        return Query(match, order)

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.peek("or"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda d: any(p(d) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.negation()]
        while self.peek("and"):
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda d: all(p(d) for p in parts))

    def negation(self) -> Predicate:
        if self.peek("not"):
            self.take()
            inner = self.negation()
            return lambda d: not inner(d)
        if self.peek() == "(":
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.clause()

    def value(self) -> Any:
        kind, raw = self.take()
        if kind not in ("str", "word"):
            raise CqlError(f"Expected a value but found {raw!r}")
        if kind == "word" and self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.take()[1])
                if self.peek() == ",":
                    self.take()
            self.take()
            return self.function(raw.lower(), args)
        return raw

    def function(self, name: str, args: list[str]) -> Any:
        if name in ("now", "startofday"):
            moment = self.now
            if args and args[0]:
                m = _OFFSET.match(args[0].strip())
                if not m:
                    raise CqlError(f"Bad time offset {args[0]!r}")
                moment += timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
            if name == "startofday":
                moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            return moment
        if name == "currentuser":
            return self.current_user or ""
        raise CqlError(f"Unsupported function {name}()")

    def clause(self) -> Predicate:
        kind, field = self.take()
        field = field.lower()
        if kind != "word" or field not in FIELDS:
            raise CqlError(f"Unsupported field {field!r}")
        negate = False
        if self.peek("not"):
            self.take()
            negate = True
            if not self.peek("in"):
                raise CqlError("Expected 'in' after 'not'")
        if self.peek("in"):
            self.take()
            self.expect("(")
            values = [self.value()]
            while self.peek() == ",":
                self.take()
                values.append(self.value())
            self.expect(")")
            return lambda d: any(_equals(d, field, v) for v in values) != negate
        op_kind, op = self.take()
        if op_kind != "op":
            raise CqlError(f"Expected an operator after {field!r}")
        return _comparison(field, op, self.value())


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    text = str(value).replace("/", "-")
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CqlError(f"Bad date {value!r}")


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _equals(doc: Doc, field: str, value: Any) -> bool:
    if field in ("created", "lastmodified"):
        return bool(doc[field].date() == _date(value).date())
    got = _as_list(doc.get(field, ""))
    return str(value).lower() in [g.lower() for g in got]


def _contains(doc: Doc, field: str, value: Any) -> bool:
    needle = str(value).lower().replace("*", "")
    return any(needle in g.lower() for g in _as_list(doc.get(field, "")))


def _comparison(field: str, op: str, value: Any) -> Predicate:
    if op in ("=", "!="):
        return lambda d: _equals(d, field, value) == (op == "=")
    if op in ("~", "!~"):
        if field not in ("title", "text", "label", "space"):
            raise CqlError(f"Operator {op} is not supported on {field}")
        return lambda d: _contains(d, field, value) == (op == "~")
    if field not in ("created", "lastmodified"):
        raise CqlError(f"Operator {op} is only supported on dates")
    bound = _date(value)
    compare: dict[str, Callable[[datetime, datetime], bool]] = {
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
    }
    return lambda d: compare[op](d[field], bound)


def parse(text: str, *, now: datetime, current_user: str | None = None) -> Query:
    """Parse ``text``; raises :class:`CqlError` with a readable reason."""
    if not text.strip():
        raise CqlError("cql is required")
    return _Parser(text, now, current_user).parse()
