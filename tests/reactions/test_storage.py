"""The text view of storage format: flat text, headings, and edits that keep the XML intact."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import storage

DOC = (
    "<h2>Setup &amp; deploy</h2><p>key: <strong>AK</strong>IA &nbsp;x</p>"
    '<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">py</ac:parameter>'
    "<ac:plain-text-body><![CDATA[a = 1 < 2 && b]]></ac:plain-text-body></ac:structured-macro>"
)


def test_flat_text_decodes_entities_and_separates_blocks() -> None:
    view = storage.parse(DOC)
    assert view.text == "Setup & deploy\nkey: AKIA \xa0x\npy\na = 1 < 2 && b\n"
    assert view.headings == ["Setup & deploy"]


def test_pieces_know_heading_code_and_hidden_text() -> None:
    view = storage.parse(DOC)
    code = view.piece_at(view.text.index("a = 1"))
    param = view.piece_at(view.text.index("py"))
    key = view.piece_at(view.text.index("key"))
    assert code is not None and code.cdata and code.in_code and code.heading == "Setup & deploy"
    assert param is not None and param.hidden
    assert key is not None and not key.in_code and not key.hidden


def test_replacement_spanning_inline_markup_keeps_tags() -> None:
    view = storage.parse(DOC)
    start = view.text.index("AKIA")
    out = storage.replace(view, [storage.Replacement(start, start + 4, "<X>")])
    assert "<strong>&lt;X&gt;</strong> &nbsp;x" in out
    assert storage.well_formed(out) is None


def test_replacement_in_cdata_is_not_escaped_but_cannot_close_it() -> None:
    view = storage.parse(DOC)
    start = view.text.index("1 < 2")
    out = storage.replace(view, [storage.Replacement(start, start + 5, "]]> & <")])
    assert storage.well_formed(out) is None
    assert "]]]]><![CDATA[> & <" in out
    assert storage.parse(out).text.count("]]> & < && b") == 1


def test_entities_are_replaced_whole_never_cut() -> None:
    view = storage.parse("<p>a&amp;b</p>")
    amp = view.text.index("&")
    out = storage.replace(view, [storage.Replacement(amp, amp + 1, "+")])
    assert out == "<p>a+b</p>"


def test_overlapping_replacements_keep_the_first() -> None:
    view = storage.parse("<p>abcdef</p>")
    reps = [storage.Replacement(0, 3, "X"), storage.Replacement(2, 5, "Y")]
    assert storage.replace(view, reps) == "<p>Xdef</p>"


def test_well_formed_reports_broken_markup() -> None:
    assert storage.well_formed("<p>a</b>") is not None
    assert (
        storage.well_formed("<p>&nbsp;<ac:link><ri:user ri:account-id='1'/></ac:link></p>") is None
    )


def test_occurrence_counts_matches() -> None:
    view = storage.parse("<p>TODO one</p><p>TODO two</p>")
    second = view.text.index("TODO", 1)
    assert storage.occurrence(view, "TODO", second) == (2, 1)


def test_find_all_skips_macro_parameters() -> None:
    view = storage.parse(DOC)
    assert [m.group(0) for m in storage.find_all(view, re.compile("py"))] == []
    assert len(storage.find_all(view, re.compile("py"), visible_only=False)) == 1


# --- property: any replacement of any span keeps a well-formed document well-formed -------

_text = st.text(alphabet=st.sampled_from(list("ab <>&]\"'x")), max_size=8)
_attr = st.text(alphabet=st.sampled_from(list("ab<>&\"'")), max_size=4)


def _escape(t: str) -> str:
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def documents(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.integers(0, 5 if depth < 3 else 2))
        if choice == 0:
            parts.append(_escape(draw(_text)))
        elif choice == 1:
            parts.append(draw(st.sampled_from(["&nbsp;", "&amp;", "&#169;", "&#x41;", "&lt;"])))
        elif choice == 2:
            cdata = draw(_text).replace("]]>", "")
            parts.append(f"<ac:plain-text-body><![CDATA[{cdata}]]></ac:plain-text-body>")
        elif choice == 3:
            value = _escape(draw(_attr)).replace('"', "&quot;")
            tag = draw(st.sampled_from(["p", "strong", "h2", "ac:parameter", "li"]))
            parts.append(f'<{tag} title="{value}">{draw(documents(depth + 1))}</{tag}>')
        elif choice == 4:
            parts.append("<br/>")
        else:
            parts.append(f'<ac:link><ri:user ri:account-id="u1"/></ac:link>{draw(_text)!s:.0}')
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(documents(), st.data())
def test_any_replacement_keeps_well_formed_xml(doc: str, data: st.DataObject) -> None:
    assert storage.well_formed(doc) is None
    view = storage.parse(doc)
    n = len(view.text)
    start = data.draw(st.integers(0, n))
    end = data.draw(st.integers(start, n))
    out = storage.replace(view, [storage.Replacement(start, end, data.draw(_text))])
    assert storage.well_formed(out) is None


def test_cdata_end_formed_across_kept_text_and_replacement_is_split() -> None:
    # found by hypothesis: "]" kept, "<" replaced by "]>" would close the section early
    doc = "<ac:plain-text-body><![CDATA[]<]]></ac:plain-text-body>"
    view = storage.parse(doc)
    out = storage.replace(view, [storage.Replacement(1, 2, "]>")])
    assert storage.well_formed(out) is None
    assert storage.parse(out).text == "]]>\n"


@pytest.mark.parametrize(
    "name", ["nbsp", "mdash", "rsquo", "euro", "hellip", "apos", "bigstar", "NewLine", "nosuch"]
)
def test_entity_names_are_accepted_as_confluence_accepts_them(name: str) -> None:
    """XHTML 1.0's named entities (and XML's five) are storage; HTML5-only names are not. The
    check the rules run before writing agrees with the simulator's, name by name."""
    from simulator.storage import well_formed_error

    fragment = f"<p>a &{name}; b</p>"
    assert (storage.well_formed(fragment) is None) == (well_formed_error(fragment) is None)
    assert (storage.well_formed(fragment) is None) == (
        name in {"nbsp", "mdash", "rsquo", "euro", "hellip", "apos"}
    )
