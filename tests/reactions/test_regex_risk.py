"""Patterns that backtrack catastrophically are told from those that do not, and the rules
file refuses the former at their line (a match has no time limit and holds the worker)."""

from __future__ import annotations

import re

import pytest

from app.errors import ConfigError
from workers.regex_risk import backtracks
from workers.rules import compile_rules

EXPONENTIAL = [
    r"^(RFC|a+)+$",
    r"(a+)+",
    r"(\w+\s?)+$",
    r"(\s*\w+)*",
    r"(a*)*",
    r"((a+))+",
    r"(?:x+y*)*",
    r"(?i)(?:a|b+)+z",
    r"x(?=(a+)+)",
    r"(a{1,200})+",
]
FINE = [
    r"^RFC",
    r"TODO[^.\n]*",
    r"\bOLD-(\d+)\b",
    r"(\d+\.)+\d+",
    r"\w+(\s\w+)*",
    r"(a++)+",
    r"(?>a+)+",
    r"(a{1,3}){2}",
    r"(ab)+",
    r"(a|b)+",
    r"[\w.]+@\w+",
]


@pytest.mark.parametrize("pattern", EXPONENTIAL)
def test_nested_repeats_that_can_split_one_run_are_found(pattern: str) -> None:
    assert backtracks(re.compile(pattern))


@pytest.mark.parametrize("pattern", FINE)
def test_repeats_that_cannot_overlap_pass(pattern: str) -> None:
    assert not backtracks(re.compile(pattern))


RULE = "version: 1\nrules:\n  - name: a\n    on: page.updated\n    actions:\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            RULE + "      - comment: hi\n    when: {title: '^(RFC|a+)+$'}",
            "r.yml:7: rules[0] (a).when.title: regular expression refused: nested repeats",
        ),
        (
            RULE + "      - inline_comment: {match: '(\\w+\\s?)+$', body: hi}",
            "r.yml:6: rules[0] (a).actions[0].inline_comment.match: regular expression refused",
        ),
        (
            RULE + "      - replace: {pattern: '(a*)*b', with: z}",
            "r.yml:6: rules[0] (a).actions[0].replace.pattern: regular expression refused",
        ),
        (
            "version: 1\nrules:\n  - name: s\n    reaction: secrets\n"
            "    options: {allow: ['(x+)+y']}",
            "r.yml:5: rules[0] (s).options: option 'allow': '(x+)+y' refused: nested repeats",
        ),
    ],
)
def test_the_rules_file_refuses_them_at_their_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_rules(text, "r.yml")
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith(problem)
