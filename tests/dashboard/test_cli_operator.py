"""``reactor status`` and ``reactor tenants``: tokens no HTTP header can carry, and a reader
that goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.errors import ConfigError
from app.settings import load_settings
from tests.dashboard.helpers import TOKEN

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["status", "tenants"])
@pytest.mark.parametrize(
    "token", ["ééééééééééééééééé", "long-enough-token-0123 ", "two words token"]
)
def test_a_token_no_header_can_carry_is_one_line(
    command: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was a UnicodeEncodeError traceback, or "cannot reach the ops API"."""
    code = main([command, "--url", "http://127.0.0.1:1", "--token", token])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("reactor: --token: ") and "printable ASCII" in err, err
    assert token.strip() not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "tokens", ["pässwörd-0123456789abcdef", "good-operator-token-1,bad operator token 2"]
)
def test_an_operator_token_no_header_can_carry_is_refused_at_start(tokens: str) -> None:
    """Header bytes are read as latin-1: such a token could never sign in, and each try
    counted against the sign-in throttle."""
    with pytest.raises(ConfigError) as info:
        load_settings(dashboard_token=tokens, _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith("REACTOR_DASHBOARD_TOKEN: ") and "printable ASCII" in problem
    assert "pässwörd" not in problem and "bad operator" not in problem
    ok = load_settings(dashboard_token=" first-operator-token , 2nd-token!~#0123", _env_file=None)
    assert ok.dashboard_tokens == ["first-operator-token", "2nd-token!~#0123"]


@pytest.mark.parametrize("command", ["status", "tenants"])
def test_a_reader_that_goes_away_ends_the_command_quietly(
    command: str, live_server: Callable[..., Any], tmp_path: Path
) -> None:
    """``reactor status | true``: a BrokenPipeError traceback and exit 1 before; now as
    ``reactor dlq list | head`` (nothing on stderr, exit 0)."""
    server = live_server()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {"PYTHONPATH": str(ROOT), "REACTOR_DASHBOARD_TOKEN": TOKEN}
    child = subprocess.Popen(
        [sys.executable, "-m", "app.cli", command, "--url", server.url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the command prints
    err = child.stderr.read()
    assert child.wait(timeout=30) == 0, err
    assert err == ""
