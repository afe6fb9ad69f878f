"""Regular expressions that backtrack catastrophically, refused before they run. Pure.

Python's ``re`` has no time limit, and a match holds the worker's event loop until it ends.
The classic exponential shape is a repeat whose body can match a run of text as one or as many
iterations of an inner repeat: ``(a+)+``, ``(RFC|a+)+``, ``(\\w+\\s?)+``, ``(\\s*\\w+)*``. On a
text that nearly matches, the engine tries every way of splitting the run (2**n for n
characters). This module finds that shape in the parsed pattern: an unbounded repeat whose body
(through groups and any branch of an alternation) is an unbounded repeat with nothing else
beside it that must match text. ``(\\d+\\.)+`` is fine (each iteration needs its ``.``), as are
possessive repeats and atomic groups, which never give back what they matched.

Overlapping alternatives (``(a|a)*``) and polynomial blow-ups are not detected: see
docs/reactions.md.
"""

from __future__ import annotations

import re

# Parsed-pattern opcodes (the parser's own module: no public API exposes the tree).
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

# A repeat counts as "many" when it may run this often or more (unbounded: MAXREPEAT).
MANY = 100
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)


def _many(repeat: tuple[int, int, Any]) -> bool:
    low, high, _ = repeat
    return bool(high == sre.MAXREPEAT or high >= MANY) and high > low


def _nullable(item: tuple[Any, Any]) -> bool:
    """Whether one parsed element can match the empty string."""
    op, av = item
    if op in _REPEATS:
        return av[0] == 0 or all(_nullable(i) for i in av[2])
    if op in (sre.SUBPATTERN, sre.ATOMIC_GROUP):
        body = av[-1] if op == sre.SUBPATTERN else av
        return all(_nullable(i) for i in body)
    if op == sre.BRANCH:
        return any(all(_nullable(i) for i in branch) for branch in av[1])
    return op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT)


def _one_repeat(body: list[tuple[Any, Any]]) -> bool:
    """Whether ``body`` can match a run as one "many" repeat with all else matching nothing."""
    for index, (op, av) in enumerate(body):
        rest = body[:index] + body[index + 1 :]
        if not all(_nullable(i) for i in rest):
            continue
        if op in _REPEATS and _many(av):
            return True
        if op == sre.SUBPATTERN and _one_repeat(list(av[-1])):
            return True
        if op == sre.BRANCH and any(_one_repeat(list(branch)) for branch in av[1]):
            return True
    return False


def _children(op: Any, av: Any) -> list[list[tuple[Any, Any]]]:
    """The sub-patterns a backtracking match may re-enter: not atomic groups or possessive
    repeats, which never give back what they matched."""
    if op in _REPEATS:
        return [list(av[2])]
    if op == sre.SUBPATTERN:
        return [list(av[-1])]
    if op == sre.BRANCH:
        return [list(branch) for branch in av[1]]
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [list(av[1])]
    return []


def _walk(body: list[tuple[Any, Any]]) -> bool:
    for op, av in body:
        if op in _REPEATS and _many(av) and _one_repeat(list(av[2])):
            return True
        if any(_walk(child) for child in _children(op, av)):
            return True
    return False


def backtracks(pattern: re.Pattern[str]) -> bool:
    """Whether ``pattern`` has nested repeats that can split one run of text in
    exponentially many ways (see the module's doc)."""
    return _walk(list(_parser.parse(pattern.pattern, pattern.flags)))


PROBLEM = (
    "nested repeats that can match the same text in many ways (as in (a+)+ or (\\w+\\s?)+) "
    "take exponential time on some texts and would hold the worker: make the repeats unable "
    "to overlap (\\w+(\\s\\w+)* rather than (\\w+\\s?)+), or use a possessive repeat (a++)"
)
