"""Authenticated encryption of secrets at rest (tenant shared secrets, Forge system tokens).

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``; a key list allows rotation:
encrypt with the first key, decrypt with any.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.errors import ConfigError, ReactorError


class DecryptionError(ReactorError):
    """A stored secret cannot be decrypted with any configured key."""


def _multi(keys: Sequence[str]) -> MultiFernet:
    if not keys:
        raise ConfigError("REACTOR_SECRET_KEY: required to encrypt tenant secrets")
    return MultiFernet([Fernet(k.encode()) for k in keys])


class SecretBox:
    """Encrypts with the first configured key, decrypts with any.

    Without a key it refuses to exist (:class:`ConfigError`), unless ``lazy``: then the keys
    are checked on first use. Readers of a store that holds sealed values among plain ones (a
    registry listed by the dashboard or the CLI) work without ``REACTOR_SECRET_KEY`` as long
    as they read nothing sealed.
    """

    def __init__(self, keys: Sequence[str], *, lazy: bool = False) -> None:
        self._keys = list(keys)
        self._made: MultiFernet | None = None if lazy else _multi(self._keys)

    @property
    def _fernet(self) -> MultiFernet:
        if self._made is None:
            self._made = _multi(self._keys)
        return self._made

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str | bytes) -> str:
        raw = token.encode() if isinstance(token, str) else token
        try:
            return self._fernet.decrypt(raw).decode()
        except InvalidToken as exc:
            raise DecryptionError(
                "stored secret cannot be decrypted with the configured keys"
            ) from exc

    def rotate(self, token: str | bytes) -> str:
        """Re-encrypt ``token`` under the first key."""
        raw = token.encode() if isinstance(token, str) else token
        return self._fernet.rotate(raw).decode()
