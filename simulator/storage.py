"""Storage format (XHTML with ``ac:``/``ri:``/``at:`` elements): well-formedness, visible text,
inline-comment markers (pure).

Confluence answers 400 to a storage body that is not a well-formed XHTML fragment. The check
parses the fragment inside a root element that declares the Confluence namespaces and the
XHTML 1.0 named entities (``&nbsp;``, ``&mdash;``, ``&rsquo;``... storage uses HTML entities, not
only XML's five); CDATA sections (``ac:plain-text-body``) and several top-level elements are fine.

The anchor text of a body is its character data with entities decoded, macro parameters and
CDATA left out, and a newline at each block boundary. An inline comment's selection is counted
and found in it, and its ``ac:inline-comment-marker`` wraps the selected characters (one marker
per run of character data when the selection crosses inline markup, all with the same ref).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.entities import name2codepoint
from xml.parsers import expat

NAMESPACES = {
    "ac": "http://atlassian.com/content",
    "ri": "http://atlassian.com/resource/identifier",
    "at": "http://atlassian.com/template",
}
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_DOCTYPE = (
    "<!DOCTYPE storage ["
    + "".join(
        f'<!ENTITY {name} "&#{code};">'
        for name, code in sorted(name2codepoint.items())
        if name not in _XML_ENTITIES
    )
    + "]>\n"
)
_OPEN = "<storage " + " ".join(f'xmlns:{k}="{v}"' for k, v in NAMESPACES.items()) + ">"

_TOKEN = re.compile(
    r"<!--.*?-->"
    r"|<!\[CDATA\[.*?\]\]>"
    r"|<\?.*?\?>"
    r"|<(?P<close>/)?(?P<name>[A-Za-z_][\w:.-]*)(?:[^>\"']|\"[^\"]*\"|'[^']*')*>",
    re.S,
)
_REFERENCE = re.compile(r"&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
_BLOCK = frozenset(
    {
        "p", "div", "br", "li", "ul", "ol", "td", "th", "tr", "table", "pre", "blockquote", "hr",
        "h1", "h2", "h3", "h4", "h5", "h6", "ac:structured-macro", "ac:rich-text-body",
        "ac:task", "ac:task-body", "ac:layout", "ac:layout-section", "ac:layout-cell",
    }
)  # fmt: skip
# Character data inside these is configuration, not page text.
_HIDDEN = frozenset({"ac:parameter", "ac:task-id", "ac:task-status", "ac:placeholder"})
MARKER = "ac:inline-comment-marker"


def well_formed_error(value: str) -> str | None:
    """None when ``value`` is a well-formed storage fragment, else why not (with a position)."""
    parser = expat.ParserCreate(namespace_separator=" ")
    try:
        parser.Parse(f"{_DOCTYPE}{_OPEN}{value}</storage>", True)
    except expat.ExpatError as exc:
        line = exc.lineno - 1
        column = exc.offset - len(_OPEN) if line == 1 else exc.offset
        reason = expat.errors.messages[exc.code] if exc.code else str(exc)
        return f"{reason} at [row,col]: [{max(line, 1)},{max(column, 0) + 1}]"
    return None


@dataclass
class AnchorText:
    """The anchor text of a body and, per character, where it sits in the raw value."""

    raw: str
    chars: list[str] = field(default_factory=list)
    # per character: raw [start, end), or None for a block-boundary newline
    spans: list[tuple[int, int] | None] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.chars)

    def starts(self, selection: str) -> list[int]:
        """Where each (non-overlapping) occurrence of ``selection`` begins, as ``str.count``."""
        found, text = [], self.text
        at = text.find(selection) if selection else -1
        while at != -1:
            found.append(at)
            at = text.find(selection, at + len(selection))
        return found

    def _separator(self) -> None:
        if self.chars and self.chars[-1] != "\n":
            self.chars.append("\n")
            self.spans.append(None)

    def _text(self, start: int, end: int) -> None:
        chunk, pos = self.raw[start:end], 0
        for ref in _REFERENCE.finditer(chunk):
            self._plain(start + pos, start + ref.start())
            for ch in html.unescape(ref.group(0)):
                self.chars.append(ch)
                self.spans.append((start + ref.start(), start + ref.end()))
            pos = ref.end()
        self._plain(start + pos, end)

    def _plain(self, start: int, end: int) -> None:
        for i in range(start, end):
            self.chars.append(self.raw[i])
            self.spans.append((i, i + 1))


def anchor_text(value: str) -> AnchorText:
    """The anchor text of a storage body (tolerant: read token by token, never raises)."""
    out = AnchorText(raw=value)
    hidden, pos = 0, 0
    for m in _TOKEN.finditer(value):
        if not hidden:
            out._text(pos, m.start())
        pos = m.end()
        name = (m.group("name") or "").lower()
        if not name:
            continue  # comment, CDATA, processing instruction
        if name in _BLOCK:
            out._separator()
        if name in _HIDDEN and not m.group(0).endswith("/>"):
            hidden = max(0, hidden + (-1 if m.group("close") else 1))
    if not hidden:
        out._text(pos, len(value))
    return out


def insert_marker(value: str, selection: str, index: int, ref: str) -> str | None:
    """``value`` with occurrence ``index`` of ``selection`` wrapped in a marker; None if absent."""
    text = anchor_text(value)
    starts = text.starts(selection)
    if not 0 <= index < len(starts):
        return None
    runs: list[list[int]] = []
    for span in text.spans[starts[index] : starts[index] + len(selection)]:
        if span is None:
            continue
        if runs and runs[-1][1] == span[0]:
            runs[-1][1] = span[1]
        else:
            runs.append([span[0], span[1]])
    opening = f'<{MARKER} ac:ref="{html.escape(ref, quote=True)}">'
    for start, end in reversed(runs):
        value = f"{value[:start]}{opening}{value[start:end]}</{MARKER}>{value[end:]}"
    return value


def has_marker(value: str, ref: str) -> bool:
    """True when ``value`` holds an inline-comment marker with this ``ac:ref``."""
    pattern = rf"<{MARKER}\b[^>]*\bac:ref\s*=\s*([\"']){re.escape(ref)}\1"
    return re.search(pattern, value) is not None
