"""Text from storage made safe to print on an operator's terminal.

Tenants, reasons and error texts shown by ``reactor status``, ``reactor tenants`` and
``reactor dlq list`` come from Redis, and some of them from outside (an exception's text, a
tenant id given to ``reactor receive``). Written raw, an escape sequence among them could
recolour the terminal, retitle its window or move the cursor to rewrite earlier lines. Every
control character (C0 but newline, DEL, C1) and every bidirectional override is shown as a
visible escape instead (``\\x1b``, ``\\u202e``). JSON output needs none of this: it escapes
control characters itself.
"""

from __future__ import annotations

import re

# C0 controls but newline, DEL and C1 controls; bidirectional embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character that could drive a terminal shown as an escape."""
    return _UNSAFE.sub(_escape, text)
