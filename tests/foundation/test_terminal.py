"""Stored text printed on an operator's terminal: control characters shown, never obeyed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.terminal import printable


def test_escape_sequences_and_bidi_overrides_are_shown_as_escapes() -> None:
    assert printable("a\x1b[31mb\x07c\x9bd\x7f") == "a\\x1b[31mb\\x07c\\x9bd\\x7f"
    assert printable("name\u202egpj.exe") == "name\\u202egpj.exe"
    assert printable("tab\there\r") == "tab\\x09here\\x0d"


def test_ordinary_text_and_newlines_are_kept() -> None:
    text = "acme.atlassian.net  page.updated  attempts=3  404 Not Found: Seite gelöscht ✓\nnext"
    assert printable(text) == text


@given(st.text())
def test_nothing_left_can_drive_a_terminal(text: str) -> None:
    shown = printable(text)
    assert not any(
        (ord(c) < 0x20 and c != "\n")
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        for c in shown
    )
