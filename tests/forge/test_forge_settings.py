"""Forge settings: Isolated Cloud labels and the IC JWKS template are validated at start."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.settings import load_settings


def test_ic_labels_are_parsed() -> None:
    settings = load_settings(forge_allow_ic_labels="orange, blue_2", _env_file=None)
    assert settings.forge_ic_labels == frozenset({"orange", "blue_2"})
    assert load_settings(_env_file=None).forge_ic_labels == frozenset()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("forge_allow_ic_labels", "Orange"),
        ("forge_allow_ic_labels", "a/b"),
        ("forge_ic_jwks_url_template", "https://keys.example/jwks.json"),
        ("forge_ic_jwks_url_template", "ftp://keys.{IC_LABEL}.example/jwks.json"),
        ("forge_ic_jwks_url_template", "http://keys.{IC_LABEL}.example/jwks.json"),
    ],
)
def test_bad_ic_settings_stop_the_start(field: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: value}, _env_file=None)
    assert info.value.problems[0].startswith(f"REACTOR_{field.upper()}:")
