"""`reactor jwt qsh` and `reactor jwt verify` through the real CLI parser."""

from __future__ import annotations

import pytest

from app.atlassian.connect_jwt import encode_connect_token
from app.cli import main

from .vectors import SIGNED_AT, load

SECRET, VECTORS = load()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().out.splitlines()


def test_qsh_prints_canonical_request_then_hash(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        capsys,
        "jwt",
        "qsh",
        "--method",
        "get",
        "--url",
        "https://x.atlassian.net/wiki/rest/api/content/123?expand=body.storage&jwt=zzz",
        "--base-url",
        "https://x.atlassian.net/wiki",
    )
    assert code == 0
    assert out == [
        "GET&/rest/api/content/123&expand=body.storage",
        "57bb05fae441085dc6023d7c8ee2c153a2763979e8c7de8f248631c48776fb82",
    ]


@pytest.mark.parametrize("vector", VECTORS[::7], ids=lambda v: v.name)
def test_verify_interop_vectors_from_the_url(capsys: pytest.CaptureFixture[str], vector) -> None:  # type: ignore[no-untyped-def]
    argv = ["jwt", "verify", "--secret", SECRET, "--method", "GET", "--url", vector.signed_url]
    code, out = run(capsys, *argv, "--now", str(SIGNED_AT))
    assert code == 0
    assert f"canonical request: {vector.canonical}" in out
    assert out[-1] == "verdict: valid"
    code, out = run(capsys, *argv, "--now", str(SIGNED_AT + 3600))
    assert code == 1
    assert out[-1].startswith("verdict: invalid (expired)")


def test_verify_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    token = encode_connect_token(
        issuer="ck", secret="s" * 32, method="POST", url="/hook?a=1", now=1000
    )
    base = ["jwt", "verify", "--method", "POST", "--url", "/hook?a=1", "--now", "1010"]
    assert run(capsys, *base, "--secret", "s" * 32, token)[0] == 0
    code, out = run(capsys, *base, "--secret", "t" * 32, token)
    assert code == 1 and out[-1].startswith("verdict: invalid (bad_signature): ")
    wrong = ["jwt", "verify", "--method", "GET", "--url", "/hook?a=1", "--now", "1010"]
    code, out = run(capsys, *wrong, "--secret", "s" * 32, token)
    assert code == 1 and "qsh_mismatch" in out[-1]
    assert any(line.startswith("claims: ") and '"iss": "ck"' in line for line in out)


def test_verify_without_any_token(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["jwt", "verify", "--secret", "x", "--method", "GET", "--url", "/x"]
    assert main(argv) == 2


def test_verify_uses_the_services_leeway(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, the tool judges a token as the service configured here would."""
    token = encode_connect_token(
        issuer="ck", secret="s" * 32, method="POST", url="/hook", now=1000, lifetime=180
    )
    late = ["jwt", "verify", "--method", "POST", "--url", "/hook", "--now", "1240"]
    late += ["--secret", "s" * 32, token]  # 60 s past exp
    code, out = run(capsys, *late)
    assert code == 1 and "expired" in out[-1]  # the default leeway, 30 s
    monkeypatch.setenv("REACTOR_JWT_LEEWAY_SECONDS", "120")
    code, out = run(capsys, *late)
    assert code == 0 and out[-1] == "verdict: valid"
