"""Detectors of credentials in plain text, pure.

Token formats (facts, not code, carried over; sources named per detector):
AWS key id prefixes from AWS IAM "Unique identifiers" (AKIA long-term, ASIA temporary); GitHub
token prefixes from GitHub's "Behind GitHub's new authentication token formats" (2021) and the
fine-grained ``github_pat_`` format; Slack token prefixes from Slack's "Token types"; Stripe
secret/restricted key prefixes from Stripe's "API keys"; Atlassian API tokens start ``ATATT``;
Google API keys ``AIza`` + 35 characters; GitLab personal access tokens ``glpat-``; npm tokens
``npm_`` + 36; PEM private key armour from RFC 7468. Everything else here is our own heuristics.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    label: str
    pattern: re.Pattern[str]
    group: int = 0  # the capture group holding the secret (0 = whole match)


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str
    label: str
    start: int
    end: int


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Order matters: earlier detectors win when spans overlap.
DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private-key",
        "private key block",
        _rx(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:.*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|[\sA-Za-z0-9+/=:,.-]*)",
            re.S,
        ),
    ),
    Detector(
        "aws-access-key-id",
        "AWS access key ID",
        _rx(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
    ),
    Detector(
        "aws-secret-access-key",
        "AWS secret access key",
        _rx(
            r"(?i:aws.{0,20}secret.{0,20}|secret.?access.?key)[\"']?\s*(?:[:=]|=>)\s*[\"']?"
            r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        group=1,
    ),
    Detector(
        "github-token",
        "GitHub token",
        _rx(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{82})\b"),
    ),
    Detector("gitlab-token", "GitLab access token", _rx(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    Detector("slack-token", "Slack token", _rx(r"\bxox[abprse]-[A-Za-z0-9-]{10,}")),
    Detector(
        "slack-webhook",
        "Slack webhook URL",
        _rx(r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+"),
    ),
    Detector("atlassian-api-token", "Atlassian API token", _rx(r"\bATATT[A-Za-z0-9_=-]{40,}")),
    Detector("stripe-key", "Stripe secret key", _rx(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}")),
    Detector("google-api-key", "Google API key", _rx(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])")),
    Detector("npm-token", "npm access token", _rx(r"\bnpm_[A-Za-z0-9]{36}\b")),
    Detector(
        "jwt",
        "JSON Web Token",
        _rx(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    Detector(
        "azure-storage-key",
        "Azure storage account key",
        _rx(r"AccountKey=([A-Za-z0-9+/]{86}==)"),
        group=1,
    ),
)

# A keyword that says "what follows is a credential", then the value.
_ASSIGNMENT = _rx(
    r"(?i)\b(password|passwd|pwd|passphrase|secret|client[_ -]?secret|token|auth[_ -]?token"
    r"|access[_ -]?token|api[_ -]?key|apikey|access[_ -]?key|private[_ -]?key|credentials?)"
    r"[\"']?\s*(?:[:=]|=>|\bis\b)\s*[\"']?([^\s\"'<>]{8,200})"
)
_PLACEHOLDER = _rx(
    r"(?i)^(?:\[redacted|<|\$\{|\{\{|%\(|x{4,}|\*{3,}|\.{3}|changeme|example|your[_-]|null$|none$"
    r"|true$|false$|required$|optional$|string$)"
)
_AWS_SECRET_BARE = _rx(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
AWS_PAIR_WINDOW = 200
REDACTED_PREFIX = "[REDACTED "


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _classes(value: str) -> int:
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )


def looks_random(value: str, min_entropy: float = 3.0) -> bool:
    """A credential-like value: long enough, mixed characters, not a placeholder."""
    value = value.rstrip(".,;:)]}")
    if len(value) < 8 or _PLACEHOLDER.match(value):
        return False
    return _classes(value) >= 2 and entropy(value) >= min_entropy


def detect(text: str, *, min_entropy: float = 3.0) -> Iterator[Hit]:
    """Every credential in ``text``, non-overlapping, in document order."""
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    for det in DETECTORS:
        for m in det.pattern.finditer(text):
            start, end = m.span(det.group)
            if text.startswith(REDACTED_PREFIX, start) or not free(start, end):
                continue
            taken.append((start, end))
            hits.append(Hit(det.kind, det.label, start, end))
    for hit in [h for h in hits if h.kind == "aws-access-key-id"]:
        # A bare 40-character key next to an access key id is its secret key.
        lo = max(0, hit.start - AWS_PAIR_WINDOW)
        for m in _AWS_SECRET_BARE.finditer(text, lo, hit.end + AWS_PAIR_WINDOW):
            if free(*m.span()) and looks_random(m.group(0), 4.0):
                taken.append(m.span())
                hits.append(Hit("aws-secret-access-key", "AWS secret access key", *m.span()))
    for m in _ASSIGNMENT.finditer(text):
        start, end = m.span(2)
        value = m.group(2)
        trimmed = value.rstrip(".,;:)]}")
        end -= len(value) - len(trimmed)
        if looks_random(trimmed, min_entropy) and free(start, end):
            taken.append((start, end))
            hits.append(Hit("credential", f"{m.group(1).lower()} value", start, end))
    return iter(sorted(hits, key=lambda h: h.start))
