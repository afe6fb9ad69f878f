"""One counting rule for inline-comment selections, wherever the app counts them.

An inline comment names its selection, how many times it occurs on the page and which
occurrence is meant; Confluence refuses (or misplaces) a comment whose count disagrees with its
own. The app counts in two places: ``pages.count_matches`` (the client's ``comment_on_text``)
and ``workers.storage.occurrence`` (the rules' ``inline`` action). Both must give the count the
simulator, our independent model of Confluence, gives: page text only (no macro parameters, no
code bodies), within one block, without overlap.
"""

from __future__ import annotations

import re

import pytest

from app.confluence import pages
from simulator.storage import anchor_text
from workers import storage

INFO = (
    '<p>Deploy &amp; deploy</p><ac:structured-macro ac:name="info">'
    '<ac:parameter ac:name="title">deploy</ac:parameter>'
    "<ac:rich-text-body><p>deploy</p></ac:rich-text-body></ac:structured-macro>"
)
CODE = (
    "<p>run deploy</p>"
    '<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter>'
    "<ac:plain-text-body><![CDATA[deploy --now && echo deploy]]></ac:plain-text-body>"
    "</ac:structured-macro>"
)
LAYOUT = (
    '<ac:layout><ac:layout-section ac:type="two_equal">'
    "<ac:layout-cell><p>left x</p></ac:layout-cell><ac:layout-cell><p>y right</p></ac:layout-cell>"
    "</ac:layout-section></ac:layout>"
)
TASKS = (
    "<ac:task-list><ac:task><ac:task-id>1</ac:task-id><ac:task-status>incomplete</ac:task-status>"
    "<ac:task-body>ship 1</ac:task-body></ac:task></ac:task-list>"
)

CASES = [
    (INFO, "deploy", 2),  # the macro's title parameter is configuration, not text
    (INFO, "Deploy & deploy", 1),
    (INFO, "ydep", 0),  # would only match across two blocks
    (CODE, "deploy", 1),  # code bodies cannot be selected
    (CODE, "bash", 0),
    (LAYOUT, "x", 1),
    (LAYOUT, "xy", 0),
    (TASKS, "1", 1),
    (TASKS, "incomplete", 0),
    ("<p><ac:placeholder>Type here</ac:placeholder>Type</p>", "Type", 1),
    ("<p>de<strong>plo</strong>y now</p>", "deploy", 1),  # inline markup is not a boundary
    ("<p>a&nbsp;b &lt;x&gt;</p>", "a\u00a0b <x>", 1),
    ("<p>aaa</p>", "aa", 1),  # without overlap, as str.count
    ("<ul><li>a b</li><li>b c</li></ul>", "b", 2),
    ("<ul><li>a b</li><li>b c</li></ul>", "b b", 0),
    ("<p>end</p><p>start</p>", "endstart", 0),
    ("<h1>Title</h1><p>Title again<br/>Title</p>", "Title", 3),
]


@pytest.mark.parametrize(("doc", "selection", "expected"), CASES)
def test_the_app_counts_selections_as_the_simulator_does(
    doc: str, selection: str, expected: int
) -> None:
    oracle = len(anchor_text(doc).starts(selection))
    assert oracle == expected
    assert pages.count_matches(doc, selection) == expected
    view = storage.parse(doc)
    found = [m.start() for m in storage.find_all(view, re.compile(re.escape(selection)))]
    indexes = [storage.occurrence(view, selection, at) for at in found]
    selectable = [index for count, index in indexes if index >= 0]
    assert all(count == expected for count, _ in indexes)
    assert selectable == list(range(expected))


def test_selections_across_blocks_occur_nowhere() -> None:
    doc = "<p>one</p><p>two</p>"
    assert pages.count_matches(doc, "one\ntwo") == 0
    assert storage.occurrence(storage.parse(doc), "one\ntwo", 0) == (0, -1)
    assert pages.count_matches(doc, "") == 0


def test_the_index_skips_text_that_cannot_be_selected() -> None:
    view = storage.parse(CODE)
    in_code = view.text.index("deploy", view.text.index("deploy") + 1)
    assert storage.occurrence(view, "deploy", in_code) == (1, -1)
    assert storage.occurrence(view, "deploy", view.text.index("deploy")) == (1, 0)
