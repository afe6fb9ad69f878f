"""Text-level view of Confluence storage format (XHTML with ``ac:``/``ri:`` elements), pure.

Reactions that read or change page text must never break the markup around it. This module
splits a storage document into markup and character data, exposes the character data as one
flat string (entities decoded, block boundaries as newlines) with a map back to the raw
document, and rewrites spans of that flat text by touching only the character data. Markup,
attributes, macros and entity references are never cut in half, so a well-formed document stays
well-formed whatever is replaced.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.entities import name2codepoint
from xml.parsers import expat

from app.confluence.pages import HIDDEN_TEXT, TEXT_BLOCKS

_TOKEN = re.compile(
    r"<!--.*?-->"  # comment
    r"|<!\[CDATA\[(?P<cdata>.*?)\]\]>"  # CDATA section (code macro bodies)
    r"|<\?.*?\?>"  # processing instruction
    r"|<(?P<close>/)?(?P<name>[A-Za-z_][\w:.-]*)(?:[^>\"']|\"[^\"]*\"|'[^']*')*>",  # tag
    re.S,
)
_ENTITY = re.compile(r"&(?:#[0-9]+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
# Block boundaries and hidden text as the client counts selections (app.confluence.pages);
# parameters and code bodies are blocks of their own here too, so no match runs into them.
_BLOCK = TEXT_BLOCKS | {"ac:parameter", "ac:plain-text-body"}
# Character data here is configuration, not visible text (macro parameters).
_HIDDEN = HIDDEN_TEXT
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
NAMESPACES = {
    "ac": "http://atlassian.com/content",
    "ri": "http://atlassian.com/resource/identifier",
    "at": "http://atlassian.com/template",
}


@dataclass(frozen=True, slots=True)
class Piece:
    """One run of character data: flat ``[start, end)`` maps to raw ``[raw_start, raw_end)``."""

    start: int
    end: int
    raw_start: int
    raw_end: int
    cdata: bool
    hidden: bool
    heading: str | None  # nearest heading before (or around) this text
    in_code: bool


@dataclass(slots=True)
class TextView:
    """The flat text of a storage document and the way back to its raw characters."""

    raw: str
    text: str = ""
    pieces: list[Piece] = field(default_factory=list)
    # per flat char: raw [start, end) in ``raw``, or (-1, -1) for synthetic separators
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)

    def piece_at(self, pos: int) -> Piece | None:
        for piece in self.pieces:
            if piece.start <= pos < piece.end:
                return piece
        return None


def _decode(chunk: str, base: int, view: TextView, out: list[str]) -> None:
    pos = 0
    for m in _ENTITY.finditer(chunk):
        for i in range(pos, m.start()):
            out.append(chunk[i])
            view.starts.append(base + i)
            view.ends.append(base + i + 1)
        decoded = html.unescape(m.group(0))
        for ch in decoded if decoded != m.group(0) else m.group(0):
            out.append(ch)
            view.starts.append(base + m.start())
            view.ends.append(base + m.end())
        pos = m.end()
    for i in range(pos, len(chunk)):
        out.append(chunk[i])
        view.starts.append(base + i)
        view.ends.append(base + i + 1)


class _Builder:
    """Walks the tokens of one document, tracking hidden, code and heading context."""

    def __init__(self, storage: str) -> None:
        self.raw = storage
        self.view = TextView(raw=storage)
        self.out: list[str] = []
        self.hidden = 0
        self.code = 0
        self.heading: str | None = None
        self.heading_open: list[str] | None = None

    def separator(self) -> None:
        if self.out and self.out[-1] != "\n":
            self.out.append("\n")
            self.view.starts.append(-1)
            self.view.ends.append(-1)

    def text(self, raw_start: int, raw_end: int, cdata: bool) -> None:
        if raw_start == raw_end:
            return
        out, view = self.out, self.view
        start = len(out)
        if cdata:
            for i in range(raw_start, raw_end):
                out.append(self.raw[i])
                view.starts.append(i)
                view.ends.append(i + 1)
        else:
            _decode(self.raw[raw_start:raw_end], raw_start, view, out)
        if self.heading_open is not None:
            self.heading_open.append("".join(out[start:]))
        view.pieces.append(
            Piece(
                start, len(out), raw_start, raw_end, cdata, self.hidden > 0, self.heading,
                self.code > 0,
            )
        )  # fmt: skip

    def tag(self, name: str, closing: bool, self_closing: bool) -> None:
        if name in _BLOCK:
            self.separator()
        step = -1 if closing else 1
        if name in _HIDDEN and not self_closing:
            self.hidden = max(self.hidden + step, 0)
        if name == "ac:plain-text-body" and not self_closing:
            self.code = max(self.code + step, 0)
        if name in HEADINGS:
            if closing and self.heading_open is not None:
                self.heading = " ".join("".join(self.heading_open).split())
                self.view.headings.append(self.heading)
                self.heading_open = None
            elif not closing:
                self.heading_open = []

    def run(self) -> TextView:
        pos = 0
        for m in _TOKEN.finditer(self.raw):
            self.text(pos, m.start(), False)
            pos = m.end()
            if m.group("cdata") is not None:
                self.text(m.start("cdata"), m.end("cdata"), True)
            elif m.group("name"):
                self.tag(m.group("name").lower(), bool(m.group("close")), m.group(0).endswith("/>"))
        self.text(pos, len(self.raw), False)
        self.view.text = "".join(self.out)
        return self.view


def parse(storage: str) -> TextView:
    """Split ``storage`` into a :class:`TextView` (tolerant: bad markup is read as text)."""
    return _Builder(storage).run()


@dataclass(frozen=True, slots=True)
class Replacement:
    """Replace flat ``[start, end)`` by ``text`` (plain text; escaped as needed here)."""

    start: int
    end: int
    text: str


def _escape(value: str, cdata: bool) -> str:
    if cdata:
        return value.replace("]]>", "]]]]><![CDATA[>")
    return html.escape(value, quote=False)


def _runs(view: TextView, start: int, end: int) -> list[tuple[int, int, bool]]:
    """Contiguous raw spans covered by flat ``[start, end)``, with their CDATA flag.

    Raw positions of two characters are adjacent only inside one run of character data, so a
    run never crosses markup.
    """
    runs: list[tuple[int, int, bool]] = []
    for i in range(start, end):
        s, e = view.starts[i], view.ends[i]
        if s < 0:
            continue
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], e, runs[-1][2])
        elif runs and runs[-1][0] <= s < runs[-1][1]:
            continue  # several decoded characters of one entity
        else:
            piece = view.piece_at(i)
            runs.append((s, e, piece.cdata if piece else False))
    return runs


def replace(view: TextView, replacements: Iterable[Replacement]) -> str:
    """Apply non-overlapping flat-text replacements; returns the new raw document."""
    text_edits: list[tuple[int, int, str]] = []
    cdata_edits: dict[Piece, list[tuple[int, int, str]]] = {}
    last_end = -1
    for rep in sorted(replacements, key=lambda r: r.start):
        if rep.start < last_end or rep.end <= rep.start:
            continue
        last_end = rep.end
        for index, (s, e, cdata) in enumerate(_runs(view, rep.start, rep.end)):
            new = rep.text if index == 0 else ""
            if not cdata:
                text_edits.append((s, e, _escape(new, False)))
                continue
            piece = next(p for p in view.pieces if p.cdata and p.raw_start <= s < p.raw_end)
            cdata_edits.setdefault(piece, []).append((s, e, new))
    # A CDATA section is rewritten whole: a "]]>" may only appear once the edits are joined.
    edits = text_edits
    for piece, changes in cdata_edits.items():
        content = view.raw[piece.raw_start : piece.raw_end]
        for s, e, new in sorted(changes, reverse=True):
            content = content[: s - piece.raw_start] + new + content[e - piece.raw_start :]
        edits.append((piece.raw_start, piece.raw_end, _escape(content, True)))
    raw = view.raw
    for s, e, new in sorted(edits, reverse=True):
        raw = raw[:s] + new + raw[e:]
    return raw


def _entity_free(fragment: str) -> str:
    """Named entities as numeric references, so a plain XML parser accepts them.

    Storage is XHTML: XML's five names and XHTML 1.0's (``&nbsp;``, ``&mdash;``...,
    ``html.entities.name2codepoint``), as Confluence and the simulator accept. HTML5-only
    names (``&NewLine;``, ``&bigstar;``) are left for the parser to reject.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in ("amp", "lt", "gt", "quot", "apos"):
            return m.group(0)
        code = name2codepoint.get(name)
        if code is None:
            return m.group(0)  # unknown: let the parser reject it
        return f"&#{code};"

    return re.sub(r"&([A-Za-z][A-Za-z0-9]*);", sub, fragment)


def well_formed(storage: str) -> str | None:
    """None when ``storage`` is a well-formed fragment, else the parser's complaint."""
    decl = " ".join(f'xmlns:{k}="{v}"' for k, v in NAMESPACES.items())
    parser = expat.ParserCreate()
    try:
        parser.Parse(f"<root {decl}>{_entity_free(storage)}</root>", True)
    except expat.ExpatError as exc:
        return str(exc)
    return None


# Markup Confluence adds to a page in place, without a new version: an inline comment wraps its
# selection in a marker (the text stays what it was).
IN_PLACE_MARKUP = frozenset({"ac:inline-comment-marker"})


def canonical(storage: str) -> str:
    """``storage`` in one spelling, to tell whether two bodies (or a body and a fragment) say
    the same markup: entities decoded, attributes sorted, empty elements written out, CDATA as
    text, comments dropped, and the markup Confluence adds in place
    (:data:`IN_PLACE_MARKUP`) left out with its text kept. A fragment that is not well-formed
    is returned as it is."""
    out: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if name in IN_PLACE_MARKUP:
            return
        pairs = "".join(f' {k}="{html.escape(v)}"' for k, v in sorted(attrs.items()))
        out.append(f"<{name}{pairs}>")

    def end(name: str) -> None:
        if name not in IN_PLACE_MARKUP:
            out.append(f"</{name}>")

    def text(data: str) -> None:
        out.append(_escape(data, False))

    decl = " ".join(f'xmlns:{k}="{v}"' for k, v in NAMESPACES.items())
    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(f"<root {decl}>{_entity_free(storage)}</root>", True)
    except (expat.ExpatError, UnicodeError):
        return storage
    whole = "".join(out)
    return whole[whole.index(">") + 1 : -len("</root>")]


def find_all(
    view: TextView, pattern: re.Pattern[str], *, visible_only: bool = True
) -> list[re.Match[str]]:
    """Matches of ``pattern`` in the flat text, skipping hidden (parameter) text if asked."""
    found = []
    for m in pattern.finditer(view.text):
        piece = view.piece_at(m.start())
        if visible_only and piece is not None and piece.hidden:
            continue
        found.append(m)
    return found


def anchor_text(view: TextView) -> str:
    """The flat text with what an inline comment cannot select (macro parameters, code bodies)
    turned into newlines: the text Confluence counts a selection in, position for position."""
    chars = list(view.text)
    for piece in view.pieces:
        if piece.hidden or piece.cdata:
            chars[piece.start : piece.end] = "\n" * (piece.end - piece.start)
    return "".join(chars)


def occurrence(view: TextView, needle: str, position: int) -> tuple[int, int]:
    """(match count, zero-based index of the one at ``position``) of ``needle`` as an inline
    comment's selection; index -1 when the text at ``position`` cannot be selected (inside a
    macro parameter or a code body, across a block, or overlapping an earlier occurrence).

    Counted as :func:`app.confluence.pages.count_matches` counts: without overlap, in the
    selectable text, within one block.
    """
    if not needle or "\n" in needle:
        return 0, -1
    text = anchor_text(view)
    starts = []
    at = text.find(needle)
    while at != -1:
        starts.append(at)
        at = text.find(needle, at + len(needle))
    return len(starts), starts.index(position) if position in starts else -1


def section_titles(storage: str) -> Sequence[str]:
    """The text of every heading, in document order."""
    return parse(storage).headings


def mention(account_id: str) -> str:
    """Storage markup that mentions (and notifies) a user."""
    return f'<ac:link><ri:user ri:account-id="{html.escape(account_id, quote=True)}" /></ac:link>'


def paragraph(text: str) -> str:
    """A paragraph of plain text, escaped."""
    return f"<p>{html.escape(text, quote=False)}</p>"
