from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.embedded_redis import free_port

REACTOR = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    full_env.update(env or {})
    return subprocess.run(
        [*REACTOR, *args], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=60
    )


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for command in ("web", "worker", "dev", "keygen", "check"):
        assert f"    {command} " in out


def test_keygen_prints_a_usable_key_last() -> None:
    last = run("keygen").stdout.strip().splitlines()[-1]
    Fernet(last.encode())


def test_check_reports_unreachable_redis_in_one_line() -> None:
    result = run(
        "check",
        env={
            "REACTOR_REDIS_URL": "redis://127.0.0.1:1",
            "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        },
    )
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert lines == ["problem: redis: cannot reach redis://127.0.0.1:1 (ConnectionError)"]
    assert "Traceback" not in result.stderr


def test_check_passes_against_a_persistent_redis(redis_target) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "check",
        env={
            "REACTOR_REDIS_URL": redis_target.url,
            "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        },
    )
    assert "ok: redis" in result.stdout
    # The session's embedded server runs without an append-only file, and check says so.
    if redis_target.owned is not None:
        assert "append-only file is off" in result.stdout
        assert result.returncode == 1


def test_invalid_settings_exit_2_with_a_clear_line() -> None:
    result = run("worker", env={"REACTOR_REDIS_URL": "mysql://x"})
    assert result.returncode == 2
    assert "REACTOR_REDIS_URL: scheme must be one of" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_dev_comes_up_ready_and_stops_clean(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env["REACTOR_STATE_DIR"] = str(tmp_path / "state")
    proc = subprocess.Popen(
        [*REACTOR, "dev", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: list[str] = []
    try:
        start = time.monotonic()
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines and lines[-1].strip() == "ready", "".join(lines)
        assert time.monotonic() - start < 30
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True
    ).stdout.strip()
    assert leftovers == "", "a child process outlived reactor dev"
    web_left = subprocess.run(
        ["pgrep", "-f", f"--port {port}"], capture_output=True, text=True
    ).stdout.strip()
    assert web_left == ""
    assert (tmp_path / "state" / "secret_key").exists()


def test_dev_with_forge_delivers_both_routes_to_one_tenant(tmp_path: Path) -> None:
    """``reactor dev --forge``: Forge events verified over the simulator's https API, mapped to
    the Connect tenant (the install linked them) and deduplicated against Connect's."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env["REACTOR_STATE_DIR"] = str(tmp_path / "state")
    env["REACTOR_LOG_FORMAT"] = "json"
    proc = subprocess.Popen(
        [*REACTOR, "dev", "--port", str(port), "--forge"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    client_key = ""
    forge_events: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not forge_events:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith("installed "):
                client_key = line.split("clientKey ", 1)[1].rstrip(")\n ")
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("source") == "forge" and "forge event" in str(entry.get("event")):
                    forge_events.append(entry)
        assert forge_events, "no Forge event reached the app:\n" + "".join(seen[-40:])
        assert client_key and forge_events[0]["tenant"] == client_key, "one tenant, both routes"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "state" / "dev-tls-cert.pem").exists()


def test_dev_passes_a_dash_leading_simulator_token_intact(tmp_path: Path) -> None:
    """A generated token may start with "-"; the simulator must still receive it as a value."""
    from app.cli import build_parser
    from app.devstack import DevStack
    from app.settings import Settings

    settings = Settings(state_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    stack = DevStack(settings, port=8000, sim_port=8001, sim_api_token="-starts-with-dash")
    argv = stack.simulator_argv("python")
    args = build_parser().parse_args(argv[argv.index("sim") :])
    assert args.api_token == "-starts-with-dash"
