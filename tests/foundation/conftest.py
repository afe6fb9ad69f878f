"""Fixtures shared by the foundation tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No REACTOR_ variable exported; the working directory (where ``.env`` is read) is tmp."""
    for name in list(os.environ):
        if name.upper().startswith("REACTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
