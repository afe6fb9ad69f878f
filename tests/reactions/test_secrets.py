"""Secret scanning and redaction on storage format: pure functions, real page shapes."""

from __future__ import annotations

import secrets as pyrandom
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import storage
from workers.reactions.secret_patterns import detect, entropy, looks_random
from workers.reactions.secrets import redact, report, scan

FIXTURES = Path(__file__).parent.parent / "fixtures" / "reactions"
PAGE = (FIXTURES / "secret_page.xml").read_text().strip()
AWS_ID, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _rand(alphabet: str, n: int) -> str:
    return "".join(pyrandom.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits


def tokens() -> dict[str, str]:
    """Freshly generated values in each public token format, by expected kind."""
    b64 = ALNUM + "+/"
    return {
        "aws-access-key-id": "AKIA" + _rand(string.ascii_uppercase + string.digits, 16),
        "github-token": "ghp_" + _rand(ALNUM, 36),
        "slack-token": "xoxb-" + _rand(string.digits, 12) + "-" + _rand(ALNUM, 24),
        "stripe-key": "sk_live_" + _rand(ALNUM, 24),
        "google-api-key": "AIza" + _rand(ALNUM, 35),
        "atlassian-api-token": "ATATT3xFfGF0" + _rand(ALNUM, 180),
        "gitlab-token": "glpat-" + _rand(ALNUM, 20),
        "npm-token": "npm_" + _rand(ALNUM, 36),
        "jwt": f"eyJ{_rand(ALNUM, 20)}.eyJ{_rand(ALNUM, 30)}.{_rand(ALNUM, 43)}",
        "azure-storage-key": f"AccountKey={_rand(b64, 86)}==",
    }


def test_fixture_page_findings_kinds_and_locations() -> None:
    found = scan("Runbook", PAGE)
    kinds = [f.kind for f in found]
    assert kinds == [
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "slack-token",
        "credential",
    ]
    assert found[0].location == "under the heading “Deploy”, in a code block (text block 6)"
    assert "under the heading “Notes”" in found[3].location
    assert "code block" not in found[3].location


def test_redaction_keeps_markup_and_removes_every_secret() -> None:
    title, body = redact("Runbook", PAGE)
    assert title == "Runbook"
    for value in (AWS_ID, AWS_SECRET, "ghp_R4nd0m", "xoxb-1234", "Zq8#vT2!mW9p"):
        assert value not in body
    assert "[REDACTED aws-access-key-id]" in body
    assert "<strong>[REDACTED credential]</strong>" in body
    assert '<ri:user ri:account-id="557058:f3c2" />' in body
    assert "changeme" in body
    assert storage.well_formed(body) is None
    assert scan(title, body) == []
    assert redact(title, body) == (title, body)  # idempotent: nothing more to do


@pytest.mark.parametrize("kind", sorted(tokens()))
def test_each_token_format_is_found(kind: str) -> None:
    value = tokens()[kind]
    hits = list(detect(f"see {value} here"))
    assert [h.kind for h in hits] == [kind]


def test_private_key_block_split_over_paragraphs_is_redacted_whole() -> None:
    body = (
        "<p>-----BEGIN OPENSSH PRIVATE KEY-----</p><p>b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE</p>"
        "<p>-----END OPENSSH PRIVATE KEY-----</p><p>after</p>"
    )
    _, out = redact("t", body)
    assert "b3BlbnNz" not in out and "BEGIN" not in out and "after" in out
    assert storage.well_formed(out) is None


def test_secret_in_title_is_redacted() -> None:
    value = "ghp_" + _rand(ALNUM, 36)
    title, _ = redact(f"token {value}", "<p>x</p>")
    assert title == "token [REDACTED github-token]"


def test_context_is_needed_for_generic_values() -> None:
    noisy = "<p>Build id 8f3a9c2e7d1b4a6f9e0c3b5a7d9f1e2c is green.</p>"
    assert scan("t", noisy) == []
    assert [f.kind for f in scan("t", "<p>api_key = 8f3a9c2e7d1b4a6f9e0c3b5a7d9f1e2c</p>")] == [
        "credential"
    ]


def test_bare_aws_secret_only_next_to_a_key_id() -> None:
    far = f"<p>{AWS_SECRET}</p>"
    assert scan("t", far) == []
    near = f"<p>{AWS_ID}</p><p>{AWS_SECRET}</p>"
    assert [f.kind for f in scan("t", near)] == ["aws-access-key-id", "aws-secret-access-key"]


def test_allow_list_skips_known_values() -> None:
    import re

    assert scan("t", f"<p>{AWS_ID}</p>", allow=[re.compile("EXAMPLE$")]) == []


def test_report_names_kind_and_place_never_the_secret() -> None:
    found = scan("Runbook", PAGE)
    text = report(found, "557058:f3c2", "page")
    assert storage.well_formed(text) is None
    assert 'ri:account-id="557058:f3c2"' in text
    assert "AWS access key ID" in text and "Deploy" in text
    for value in (AWS_ID, AWS_SECRET, "ghp_R4nd0m", "xoxb", "Zq8#vT2!mW9p"):
        assert value not in text


def test_entropy_and_randomness() -> None:
    assert entropy("aaaa") == 0
    assert entropy("abcd") == 2
    assert not looks_random("password")
    assert not looks_random("${DB_PASSWORD}")
    assert looks_random("Zq8#vT2!mW9p")


# --- properties --------------------------------------------------------------------------

_filler = st.text(alphabet=st.sampled_from(list("ab <>&\n")), max_size=10)


def _esc(t: str) -> str:
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_filler, st.sampled_from(sorted(tokens())), st.integers(0, 3)), max_size=5)
)
def test_redaction_is_well_formed_complete_and_idempotent(
    parts: list[tuple[str, str, int]],
) -> None:
    values = tokens()
    wrappers = [
        "<p>{}</p>",
        "<p><strong>{}</strong></p>",
        "<ac:plain-text-body><![CDATA[{}]]></ac:plain-text-body>",
        "<li>{}</li>",
    ]
    chunks = []
    for filler, kind, wrap in parts:
        raw = f"{filler} {values[kind]} "
        text = raw if wrap == 2 else _esc(raw)
        chunks.append(wrappers[wrap].format(text))
    body = "".join(chunks)
    _, out = redact("t", body)
    assert storage.well_formed(out) is None
    for _, kind, _ in parts:
        assert values[kind].split("=")[-1][:20] not in out or kind == "azure-storage-key"
    assert scan("t", out) == []
    assert redact("t", out) == ("t", out)
