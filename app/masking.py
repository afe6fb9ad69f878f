"""Which keys name a secret, and copies of data with those values masked. Pure, no I/O.

One rule for every place that shows data it did not write: log lines (:mod:`app.logs`), the
dashboard and the ops API, and the CLI (stored payloads may carry credentials a sender put in
them). A key names a secret when it contains one of :data:`SECRET_KEY_PATTERN`'s fragments, or
when one of its words (camelCase, snake_case, kebab-case) is in :data:`SECRET_WORDS`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# A key holding a secret contains one of these (any case, anywhere in the key)...
SECRET_KEY_PATTERN = re.compile(
    r"(secret|token|passw|passphrase|authorization|bearer|jwt|cookie|session|csrf|xsrf|"
    r"api[\s_-]?key|access[\s_-]?key|private[\s_-]?key|signature|credential)",
    re.IGNORECASE,
)
# ... or is made of words one of which is one of these: short words that would match inside
# ordinary keys (``authorAccountId``, ``bypass``) as substrings.
SECRET_WORDS = frozenset({"auth", "pass", "pwd", "sig"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
MASK = "•••"


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a mapping key names a secret (memoised: keys repeat, log fields above all)."""
    if SECRET_KEY_PATTERN.search(name):
        return True
    return any(word.lower() in SECRET_WORDS for word in _WORDS.findall(name))


def mask_secrets(value: Any, mask: str = MASK) -> Any:
    """A copy of ``value`` with every non-empty value under a secret-looking key masked."""
    if isinstance(value, dict):
        return {
            k: (
                mask
                if is_secret_key(k if isinstance(k, str) else str(k)) and v not in (None, "")
                else mask_secrets(v, mask)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v, mask) for v in value]
    return value
