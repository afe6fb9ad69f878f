"""``reactor web``: one process, TLS files checked before start, its limits from the settings,
one line once it listens, its open-file limit raised."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.cli import main
from app.devcert import dev_certificate
from app.embedded_redis import free_port
from app.errors import ConfigError
from app.http_protocol import BoundedHttpToolsProtocol, HttpLimits
from app.settings import Settings
from app.web_server import check_tls_files, uvicorn_config

ROOT = Path(__file__).resolve().parents[2]


def test_more_than_one_process_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--workers", "2"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("reactor: --workers: one web process per container")
    assert line.endswith("scale with replicas instead")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    cert, key = dev_certificate(tmp_path / "a")
    return str(cert), str(key)


def test_a_certificate_and_its_key_pass(pair: tuple[str, str], tmp_path: Path) -> None:
    cert, key = pair
    check_tls_files(cert, key)
    check_tls_files(None, None)
    both = tmp_path / "both.pem"
    both.write_bytes(Path(cert).read_bytes() + Path(key).read_bytes())
    check_tls_files(str(both), None)


def test_each_bad_tls_file_is_named_in_one_line(pair: tuple[str, str], tmp_path: Path) -> None:
    cert, key = pair
    _, other_key = dev_certificate(tmp_path / "b")
    text = tmp_path / "hostname"
    text.write_text("reactor-host\n")
    cases = [
        ((cert, "/nope.key"), "--ssl-keyfile: /nope.key: no such file or directory"),
        (("/nope.pem", key), "--ssl-certfile: /nope.pem: no such file or directory"),
        ((str(tmp_path), key), f"--ssl-certfile: {tmp_path}: is a directory"),
        ((None, key), "--ssl-keyfile needs --ssl-certfile"),
        ((str(text), key), f"--ssl-certfile: {text}: not a PEM certificate"),
        ((cert, None), f"--ssl-certfile: {cert}: holds no private key of its own; give "),
        ((cert, str(other_key)), f"--ssl-keyfile: {other_key}: not the private key of "),
        ((cert, cert), f"--ssl-keyfile: {cert}: not the private key of --ssl-certfile"),
    ]
    for (certfile, keyfile), expected in cases:
        with pytest.raises(ConfigError) as info:
            check_tls_files(certfile, keyfile)
        (problem,) = info.value.problems
        assert problem.startswith(expected), (certfile, keyfile, problem)


def test_reactor_web_with_a_missing_certificate_exits_2_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["web", "--ssl-certfile", "/nope.pem", "--ssl-keyfile", "/nope.key"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "reactor: --ssl-certfile: /nope.pem: no such file or directory\n"
    )


def test_the_web_settings_bound_uvicorn(settings: Settings) -> None:
    limited = settings.model_copy(
        update={
            "web_max_connections": 300,
            "web_max_url_bytes": 5000,
            "web_max_header_bytes": 9000,
            "web_header_timeout_seconds": 4.0,
            "web_body_timeout_seconds": 7.0,
        }
    )
    config = uvicorn_config(limited, host="127.0.0.1", port=8000, forwarded_allow_ips="")
    assert config.limit_concurrency == 300
    assert isinstance(config.http, type) and issubclass(config.http, BoundedHttpToolsProtocol)
    assert config.http.limits == HttpLimits(
        max_url_bytes=5000,
        max_header_bytes=9000,
        head_timeout=4.0,
        body_timeout=7.0,
        max_connections=300,
    )
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert HttpLimits() == HttpLimits(
        max_url_bytes=defaults.web_max_url_bytes,
        max_header_bytes=defaults.web_max_header_bytes,
        head_timeout=defaults.web_header_timeout_seconds,
        body_timeout=defaults.web_body_timeout_seconds,
        max_connections=defaults.web_max_connections,
    )


def _few_open_files() -> None:
    """In the child before exec: a soft limit of open files far below the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def _open_file_limits(pid: int) -> tuple[str, str]:
    """Soft and hard limit of open files of a running process (Linux)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-file limit")


def test_reactor_web_says_where_it_listens_once_it_does_its_open_file_limit_raised(
    settings: Settings,
) -> None:
    """With a soft limit of 256 files, 256 idle sockets would lock everyone out; it is raised
    to the hard limit so that REACTOR_WEB_MAX_CONNECTIONS is what bounds connections."""
    assert settings.redis_url is not None
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 256:
        pytest.skip("the hard limit of open files is 256 or less here")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
        "REACTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "REACTOR_DASHBOARD_TOKEN": "an-operator-token-long-enough",
        "REACTOR_BASE_URL": "https://reactor.example.com",
        "REACTOR_LOG_FORMAT": "json",
    }
    web = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "web", "--host", "127.0.0.1", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=_few_open_files,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert web.stderr is not None
        for line in web.stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=30))
        assert first["event"] == "web server listening", first
        assert first["address"] == f"http://127.0.0.1:{port}"
        assert first["base_url"] == "https://reactor.example.com"
        assert first["level"] == "info"
        soft, hard = _open_file_limits(web.pid)
        assert soft == hard, (soft, hard)
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
