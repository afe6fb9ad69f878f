"""Coverage-guided fuzzing of the token parsers with atheris (libFuzzer), when it is installed.

Skipped without atheris (``pip install atheris``). In CI it runs a bounded number of inputs in
a child process (atheris takes over the interpreter it runs in); ``python -m
tests.fuzz.test_atheris -runs=N`` or ``-max_total_time=S`` runs it longer by hand. Any
exception other than our own ``ReactorError`` crashes the fuzzer and fails the test.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
RUNS = 20_000


def one_input(data: bytes) -> None:
    from app.atlassian import connect_jwt, events, forge_token, install_token
    from app.errors import ReactorError

    text = data.decode("utf-8", "replace")
    for call in (
        lambda: connect_jwt.parse_token(text),
        lambda: connect_jwt.verify_connect_token(
            text, secret_for=lambda _: "s" * 32, method="POST", url="/x", base_url="https://r.test"
        ),
        lambda: forge_token.inspect_token(text),
        lambda: install_token.read_install_key_id(text),
        lambda: events.from_connect("t", "page_updated", _json(data)),
        lambda: events.from_forge("t", _json(data)),
    ):
        with contextlib.suppress(ReactorError):
            call()


def _json(data: bytes) -> object:
    import json

    try:
        return json.loads(data)
    except ValueError:
        return data.decode("latin-1")


def main() -> None:
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

    with atheris.instrument_imports():
        import app.atlassian.connect_jwt
        import app.atlassian.events
        import app.atlassian.forge_token
        import app.atlassian.install_token  # noqa: F401
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_atheris_finds_no_crash(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.test_atheris", f"-runs={RUNS}", "-max_len=512"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {RUNS} runs" in result.stderr


if __name__ == "__main__":
    main()
