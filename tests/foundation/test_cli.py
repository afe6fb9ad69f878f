from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

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


CERT = "dev-tls-cert.pem"  # what reactor dev --forge makes in its state directory


def start_dev(port: int, state: Path, *extra: str, **env: str) -> subprocess.Popen[str]:
    """``reactor dev`` on ``port`` with its state in ``state``, output (both streams) piped."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    full_env |= {"REACTOR_STATE_DIR": str(state), **env}
    return subprocess.Popen(
        [*REACTOR, "dev", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        cwd=ROOT,
    )


def until_ready(proc: subprocess.Popen[str]) -> list[str]:
    """The lines ``reactor dev`` printed up to its ``ready``, which must come.

    The children share its output: the end of another one's line may come just before it.
    """
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.rstrip().endswith("ready"):
            break
    assert lines and lines[-1].rstrip().endswith("ready"), "".join(lines)
    return lines


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for command in ("web", "worker", "dev", "keygen", "check"):
        assert f"    {command} " in out


def test_keygen_prints_only_the_key_on_stdout() -> None:
    """``REACTOR_SECRET_KEY=$(reactor keygen)`` works: the comment goes to stderr."""
    result = run("keygen")
    (key,) = result.stdout.splitlines()
    Fernet(key.encode())
    assert result.stderr.startswith("# a fresh REACTOR_SECRET_KEY")


# What reactor check wants of a deployment Atlassian can install (tests/foundation/test_checks.py)
PUBLIC_ENV = {
    "REACTOR_BASE_URL": "https://reactor.example.com",
    "REACTOR_DASHBOARD_TOKEN": "o" * 32,
}


def test_check_reports_unreachable_redis_in_one_line() -> None:
    result = run(
        "check",
        env={
            "REACTOR_REDIS_URL": "redis://127.0.0.1:1",
            "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
            **PUBLIC_ENV,
        },
    )
    assert result.returncode != 0
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(
        "problem: redis: cannot reach redis://127.0.0.1:1 (REACTOR_REDIS_URL): ConnectionError: "
    )
    assert "127.0.0.1:1" in line.partition("ConnectionError: ")[2]  # redis-py's own message
    assert "Traceback" not in result.stderr


def test_check_loads_the_reactions_a_worker_would(tmp_path: Path) -> None:
    """A missing rules file or reaction module stops the worker at start: check says so."""
    env = {
        "REACTOR_REDIS_URL": "redis://127.0.0.1:1",
        "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "REACTOR_RULES_FILE": str(tmp_path / "missing.yml"),
        "REACTOR_REACTIONS": "no.such.module",
    }
    lines = run("check", env=env).stdout.strip().splitlines()
    assert "problem: REACTOR_REACTIONS: no module named 'no.such.module'" in lines
    assert any(line.startswith("problem: REACTOR_RULES_FILE: cannot read") for line in lines)
    rules = tmp_path / "rules.yml"
    rules.write_text("version: 1\nrules:\n  - name: a\n    on: [page.created]\n"
                     "    actions: [{comment: hi}]\n")  # fmt: skip
    good = run("check", env={**env, "REACTOR_RULES_FILE": str(rules), "REACTOR_REACTIONS": ""})
    assert "ok: reactions: 1 load" in good.stdout.splitlines()


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


def test_check_names_the_fsync_policy_and_refuses_no(tmp_path: Path) -> None:
    """An append-only file the OS flushes when it likes ("appendfsync no") loses acknowledged
    events on a crash as surely as none: ``check`` says so."""
    import redis as sync_redis

    from app.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "aof", appendonly=True)
    server.start()
    env = {
        "REACTOR_REDIS_URL": server.url,
        "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        **PUBLIC_ENV,
    }
    try:
        fine = run("check", env=env)
        assert "ok: redis persistence: appendfsync everysec" in fine.stdout
        assert fine.returncode == 0, fine.stdout
        with sync_redis.Redis.from_url(server.url) as client:
            client.config_set("appendfsync", "no")
        lax = run("check", env=env)
        assert "problem: redis persistence: appendfsync is 'no'" in lax.stdout
        assert lax.returncode == 1
    finally:
        server.stop()


def test_invalid_settings_exit_2_with_a_clear_line() -> None:
    result = run("worker", env={"REACTOR_REDIS_URL": "mysql://x"})
    assert result.returncode == 2
    assert "REACTOR_REDIS_URL: scheme must be one of" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_dev_comes_up_ready_and_stops_clean(tmp_path: Path) -> None:
    port = free_port()
    proc = start_dev(port, tmp_path / "state")
    try:
        start = time.monotonic()
        until_ready(proc)
        assert time.monotonic() - start < 30
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        # Nobody acts, yet the demo users do once the app is installed: the dashboard's job
        # list has an event within seconds (not after the first reconcile sweep).
        token = (tmp_path / "state" / "dashboard_token").read_text().strip()
        jobs: list[object] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not jobs:
            listing = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/jobs", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(listing, timeout=5) as resp:
                jobs = json.loads(resp.read())["jobs"]
            time.sleep(0.3)
        assert jobs, "no event reached the dashboard without anyone acting"
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
    proc = start_dev(port, tmp_path / "state", "--forge", REACTOR_LOG_FORMAT="json")
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    client_key = ""
    forge_events: list[dict[str, object]] = []
    sim_url = ""
    acted = 0.0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not forge_events:
            if client_key and sim_url and time.monotonic() - acted > 5:
                # a user edits something: Confluence tells the app by both routes
                act = urllib.request.Request(f"{sim_url}/_sim/act/random", method="POST")
                context = ssl.create_default_context(cafile=tmp_path / "state" / CERT)
                urllib.request.urlopen(act, timeout=10, context=context).close()
                acted = time.monotonic()
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            # Children share the pipe: another one's line may be glued to this one.
            installed = re.search(r"installed .*\(clientKey ([\w-]+)\)", line)
            if installed:
                client_key = installed.group(1)
            found = re.match(r"simulator\s+(https://[\d.:]+)/wiki", line)
            if found:
                sim_url = found.group(1)
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("source") == "forge" and "forge event" in str(entry.get("event")):
                    forge_events.append(entry)
        assert forge_events, "no Forge event reached the app:\n" + "".join(seen[-40:])
        assert client_key and forge_events[0]["tenant"] == client_key, "one tenant, both routes"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "state" / CERT).exists()


def test_dev_hands_the_simulator_its_token_intact_and_out_of_sight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not on the command line (every user of the machine sees those in ps) but in the
    child's environment; a generated token may start with "-" and still arrives whole."""
    from app.cli import build_parser
    from app.devstack import DevStack
    from app.settings import Settings
    from simulator.cli import SIM_TOKEN_ENV, api_token_of

    settings = Settings(  # type: ignore[call-arg]
        state_dir=tmp_path,
        redis_url="redis://127.0.0.1:1/0",
        secret_key=Fernet.generate_key().decode(),
        dashboard_token="t" * 32,
        _env_file=None,
    )
    stack = DevStack(settings, port=8000, sim_port=8001, sim_api_token="-starts-with-dash")
    env = stack.environment()
    argv = stack.simulator_argv("python")
    assert "-starts-with-dash" not in " ".join(argv)
    args = build_parser().parse_args(argv[argv.index("sim") :])
    assert args.api_token is None
    monkeypatch.setenv(SIM_TOKEN_ENV, env[SIM_TOKEN_ENV])
    assert api_token_of(args.api_token) == "-starts-with-dash"
    assert api_token_of("given") == "given"


@pytest.mark.slow
def test_a_second_dev_on_the_same_state_directory_is_refused_at_once(tmp_path: Path) -> None:
    """It would start a second Redis on the same append-only file and rewrite the state."""
    port = free_port()
    state = tmp_path / "state"
    proc = start_dev(port, state)
    try:
        until_ready(proc)
        conf = state / "redis" / "valkey.conf"
        written = conf.stat().st_mtime_ns

        start = time.monotonic()
        second = run("dev", "--port", str(port), env={"REACTOR_STATE_DIR": str(state)})
        assert second.returncode == 1 and time.monotonic() - start < 15
        assert second.stdout == ""  # nothing started: no simulator, no banner
        assert f"the state directory {state.resolve()} is in use" in second.stderr
        assert "Traceback" not in second.stderr
        assert conf.stat().st_mtime_ns == written
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200  # the first stack runs on

        # the web server listens on loopback only: another local address is refused
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
    finally:
        proc.send_signal(signal.SIGINT)  # its children stop with it
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    # once it has stopped, the directory is free again
    from app.devstack import lock_state_dir

    os.close(lock_state_dir(state))


def test_dev_children_hold_the_state_directory_after_the_supervisor_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor killed with SIGKILL leaves its children running: they keep the lock."""
    from app.devstack import Child, DevStack, lock_state_dir
    from app.errors import ConfigError
    from app.settings import Settings

    state = tmp_path / "state"
    settings = Settings(  # type: ignore[call-arg]
        state_dir=state, redis_url="redis://127.0.0.1:1/0", _env_file=None
    )
    lock = lock_state_dir(state)
    stack = DevStack(settings, port=free_port(), sim_port=free_port(), lock_fd=lock)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(stack, "plan", lambda: [Child("child", sleeper)])
    stack.start()
    os.close(lock)  # what the supervisor's death does to its own descriptor
    try:
        with pytest.raises(ConfigError, match="in use by another reactor dev"):
            lock_state_dir(state)
    finally:
        stack.stop()
    os.close(lock_state_dir(state))  # the last holder gone, the directory is free


def test_dev_stops_when_its_embedded_redis_dies(tmp_path: Path) -> None:
    """Web, worker and simulator all depend on it: its death stops the stack with a reason."""
    from app.devstack import DevStack
    from app.errors import ConfigError
    from app.settings import Settings

    settings = Settings(state_dir=tmp_path / "state", _env_file=None)  # type: ignore[call-arg]
    stack = DevStack(settings, port=free_port(), sim_port=free_port())
    stack.environment()  # starts the embedded Redis (no REACTOR_REDIS_URL)
    assert stack.redis is not None and stack.redis.process is not None
    try:
        stack.check_alive()
        stack.redis.process.kill()
        stack.redis.process.wait(10)
        with pytest.raises(ConfigError, match="embedded Redis exited"):
            stack.check_alive()
    finally:
        stack.stop()


def test_dev_keeps_the_simulator_port_across_runs_while_it_is_free(tmp_path: Path) -> None:
    """The demo tenant's base URL names the port: a restart on another one would send the
    events waiting from the last run to a dead port."""
    from app.devstack import simulator_port

    first = simulator_port(tmp_path)
    assert simulator_port(tmp_path) == first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        moved = simulator_port(tmp_path)
    assert moved != first
    assert simulator_port(tmp_path) == moved


def test_dev_web_server_binds_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    from app.cli import build_parser
    from app.devstack import DevStack
    from app.settings import Settings

    settings = Settings(state_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]

    def web_host(stack: DevStack) -> str:
        (web,) = [c for c in stack.plan() if c.name == "web"]
        host: str = build_parser().parse_args(web.argv[web.argv.index("web") :]).host
        return host

    assert build_parser().parse_args(["dev"]).host == "127.0.0.1"
    assert web_host(DevStack(settings, port=8000)) == "127.0.0.1"
    exposed = DevStack(settings, port=8000, host="0.0.0.0")
    assert web_host(exposed) == "0.0.0.0"
    assert exposed.web_url == "http://127.0.0.1:8000"  # what it probes and prints


def test_dev_never_says_ready_when_interrupted_while_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C arriving while the banner is printed: the stack stops without ``ready``."""
    from app import devstack
    from app.settings import Settings

    env = {
        "REACTOR_DASHBOARD_TOKEN": "cli-operator-token",
        "REACTOR_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    monkeypatch.setattr(devstack.DevStack, "start", lambda self: env)
    monkeypatch.setattr(devstack.DevStack, "wait_ready", lambda self: None)

    def print_then_interrupt(*args: object, **kwargs: Any) -> None:
        print(*args, **kwargs)
        if str(args[0]).startswith("web "):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(devstack, "print", print_then_interrupt, raising=False)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        settings = Settings(state_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
        code = devstack.run(settings, 18005)
        after = {sig: signal.getsignal(sig) for sig in handlers}
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    out = capsys.readouterr().out
    assert "web        http://127.0.0.1:18005/" in out
    assert "ready" not in out.split()
    assert code == 0
    assert after == handlers, "the Ctrl-C handler is given back"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["web", "--port", "0"], "argument --port: must be a port from 1 to 65535, not 0"),
        (["web", "--workers", "0"], "argument --workers: must be at least 1, not 0"),
        (["worker", "--concurrency", "-2"], "argument --concurrency: must be at least 1, not -2"),
        (["dev", "--port", "-1"], "argument --port: must be a port from 1 to 65535 (0: any)"),
        (["dev", "--activity", "0.2"], "argument --activity: must be 0 (none) or at least 1"),
        (["sim", "--demo-activity", "nan"], "argument --demo-activity: must be 0 (none) or at"),
        (["sim", "--port", "70000"], "argument --port: must be a port from 1 to 65535"),
        (["sim", "--time-scale", "0"], "argument --time-scale: must be a number above 0, not 0"),
        (["sim", "--app-quota", "-5"], "argument --app-quota: must be at least 1, not -5"),
        (
            ["reconcile", "--tenant", "t", "--since", "2026-01-01", "--max-items", "-1"],
            "argument --max-items: must be at least 1, not -1",
        ),
        (["dlq", "list", "--limit", "0"], "argument --limit: must be at least 1, not 0"),
        (["status", "--timeout", "-1"], "argument --timeout: must be a number above 0, not -1"),
        (["tenants", "--timeout", "0"], "argument --timeout: must be a number above 0, not 0"),
        (
            ["jwt", "verify", "--method", "GET", "--url", "/", "--secret", "s", "--leeway", "-1"],
            "argument --leeway: must be 0 or more, not -1",
        ),
    ],
)
def test_numeric_options_refuse_values_that_make_no_sense(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert problem in capsys.readouterr().err


def test_jwt_qsh_of_an_unparsable_url_is_one_line() -> None:
    result = run("jwt", "qsh", "--method", "GET", "--url", "http://[::1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "reactor jwt qsh: --url: not a valid URL (Invalid IPv6 URL)\n"
