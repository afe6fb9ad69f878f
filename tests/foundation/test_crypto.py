from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from app.crypto import DecryptionError, SecretBox
from app.errors import ConfigError


def test_rotation_encrypts_with_first_and_decrypts_with_any() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = SecretBox([old]).encrypt("shared-secret")
    assert "shared-secret" not in stored
    rotated_box = SecretBox([new, old])
    assert rotated_box.decrypt(stored) == "shared-secret"
    assert SecretBox([new]).decrypt(rotated_box.rotate(stored)) == "shared-secret"
    with pytest.raises(DecryptionError):
        SecretBox([new]).decrypt(stored)


def test_tampering_is_detected() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    token = box.encrypt("s")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        box.decrypt(tampered)


def test_a_box_needs_a_key_at_once_unless_lazy() -> None:
    with pytest.raises(ConfigError, match="REACTOR_SECRET_KEY"):
        SecretBox([])
    lazy = SecretBox([], lazy=True)  # made without a key: checked on first use
    with pytest.raises(ConfigError, match="REACTOR_SECRET_KEY"):
        lazy.encrypt("s")
    key = Fernet.generate_key().decode()
    assert SecretBox([key], lazy=True).decrypt(SecretBox([key]).encrypt("s")) == "s"
