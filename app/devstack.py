"""``reactor dev``: every part of the product on one laptop, started and stopped together.

Children run in their own sessions so a Ctrl-C reaches only this supervisor, which then stops
them in order (SIGTERM, then SIGKILL after a grace period) and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from cryptography.fernet import Fernet

from app.devcert import dev_certificate
from app.embedded_redis import EmbeddedRedis, free_port
from app.errors import ConfigError
from app.masking import MASK
from app.redis import display_url
from app.settings import Settings
from simulator.cli import SIM_TOKEN_ENV

GRACE_SECONDS = 7.0
READY_TIMEOUT = 30.0
# The Forge app id the dev stack installs in the simulator (and the app expects) with --forge.
DEV_FORGE_APP_ID = "ari:cloud:ecosystem::app/confluence-reactor-dev"
# Shipped inside the package (package data), so a wheel or the Docker image has it too.
DEV_RULES = Path(__file__).resolve().parent / "dev-rules.yml"
# Held (flock) by the running ``reactor dev`` for its whole life: one stack per state directory.
LOCK_FILE = "dev.lock"
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - compared, not bound


def lock_state_dir(state_dir: Path) -> int:
    """Take the state directory for this process; the open lock file's descriptor.

    The lock (``flock``, exclusive) is released when the descriptor is closed or the process
    ends, however it ends. Another ``reactor dev`` on the same directory is refused here,
    before it starts or writes anything (its Redis would share the append-only file).
    """
    where = state_dir.resolve()
    path = where / LOCK_FILE
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot use the state directory {where}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        if isinstance(exc, BlockingIOError):
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise ConfigError(
                f"the state directory {where} is in use by another reactor dev{by}; "
                "stop it first, or set REACTOR_STATE_DIR to another directory"
            ) from None
        raise ConfigError(f"cannot lock {path}: {exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def state_secret(state_dir: Path, name: str, make: str) -> str:
    """Read ``state_dir/name``, creating it with ``make`` (mode 600) on first use."""
    path = state_dir / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(make + "\n")
    return make


def simulator_port(state_dir: Path) -> int:
    """The simulator's port of the previous run when it is free, else a new one (remembered).

    The demo site's base URL names the port and is stored with its tenant: on the same port,
    events waiting from the previous run reach the site at once after a restart, instead of
    failing an attempt on a dead port until the simulator has installed the app again.
    """
    path = state_dir / "sim_port"
    try:
        port = int(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        port = 0
    if 0 < port < 65536 and _port_free(port):
        return port
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n", encoding="utf-8")
    return port


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        # as the simulator's server binds: connections of the last run left in TIME_WAIT
        # do not make the port busy, a listener does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


@dataclass
class DevStack:
    settings: Settings
    port: int = 8000
    sim_port: int | None = None
    sim_api_token: str | None = None
    children: list[Child] = field(default_factory=list)
    redis: EmbeddedRedis | None = None
    stopping: bool = False
    # Forge too: the simulator serves https with a dev certificate (Forge tokens name an https
    # API) and installs the app as a Forge app as well, linked to its Connect install.
    forge: bool = False
    tls: tuple[Path, Path] | None = None
    # The web server's address: loopback unless asked otherwise (the dashboard is not exposed).
    host: str = "127.0.0.1"
    # The state directory's lock (see lock_state_dir): the children hold it too, so a stack
    # whose supervisor was killed still keeps a second one off the directory while they live.
    lock_fd: int | None = None
    # Seconds between the demo users' edits, comments and labels (0: none); the first comes
    # as soon as the app is installed, so a fresh stack shows events at once.
    activity: float = 30.0
    # The operator token this stack generated (kept in the state directory); None when the
    # settings (environment or .env) gave one.
    dashboard_token: str | None = None
    # Lines for the operator about settings the stack overrode (printed once, at start).
    notes: list[str] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        """The Redis the children use: the settings' (environment or .env), else embedded."""
        if self.redis is not None:
            return self.redis.url
        return self.settings.redis_url or ""

    @property
    def web_url(self) -> str:
        """Where this machine reaches the web server (loopback when it listens on any address)."""
        host = "127.0.0.1" if self.host in ANY_ADDRESS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The children's environment: this process's, plus what the settings leave to the stack.

        What is given is read from the settings, which read ``.env`` as well as the environment
        (and so do the children, from the same working directory): a value in ``.env`` counts
        exactly like an exported one.
        """
        state = self.settings.state_dir
        given = self.settings.model_fields_set
        env = dict(os.environ)
        if self.settings.redis_url is None:
            self.redis = EmbeddedRedis(state / "redis")
            self.redis.start()
            env["REACTOR_REDIS_URL"] = self.redis.url
        if not self.settings.secret_keys:
            env["REACTOR_SECRET_KEY"] = state_secret(
                state, "secret_key", Fernet.generate_key().decode()
            )
        if not self.settings.dashboard_tokens:
            self.dashboard_token = state_secret(state, "dashboard_token", secrets.token_urlsafe(24))
            env["REACTOR_DASHBOARD_TOKEN"] = self.dashboard_token
        # The stack owns its base URL: the descriptor's baseUrl and the audience of the
        # simulator's install must be this web server, or the install fails.
        env["REACTOR_BASE_URL"] = self.web_url
        if "base_url" in given and self.settings.base_url != self.web_url:
            self.notes.append(
                f"REACTOR_BASE_URL={self.settings.base_url} is not this stack's web URL; "
                f"using {self.web_url}"
            )
        self.sim_port = self.sim_port or simulator_port(state)
        if self.forge:
            self.tls = dev_certificate(state)
            env["SSL_CERT_FILE"] = str(self.tls[0])  # httpx and urllib of the children trust it
            # The simulator signs as the dev app with its own keys: what the shell exported
            # for a real Forge app would only make every Forge event fail verification here.
            env["REACTOR_FORGE_APP_ID"] = DEV_FORGE_APP_ID
            env["REACTOR_FORGE_JWKS_URL"] = f"{self.sim_url}/_sim/forge/jwks.json"
        self.sim_api_token = self.sim_api_token or state_secret(
            state, "sim_api_token", secrets.token_urlsafe(18)
        )
        env[SIM_TOKEN_ENV] = self.sim_api_token  # not on the command line, where ps shows it
        defaults = {
            "connect_install_keys_url": f"{self.sim_url}/_sim/install-keys",
            "connect_oauth_url": self.sim_url,  # act-as-user grants
            "log_format": "console",
        }
        if not self.settings.reaction_modules and self.settings.rules_file is None:
            # the demo site's rules: secret scanner, welcome, template guard (docs/reactions.md)
            defaults["rules_file"] = str(DEV_RULES)
        for name, value in defaults.items():
            if name not in given:
                env[f"REACTOR_{name.upper()}"] = value
        return env

    def plan(self) -> list[Child]:
        python = sys.executable
        children = [
            Child(
                "web",
                [python, "-m", "app.cli", "web", "--host", self.host, "--port", str(self.port)],
            ),
            Child("worker", [python, "-m", "app.cli", "worker"]),
        ]
        if self.sim_port is not None:
            children.append(Child("simulator", self.simulator_argv(python)))
        return children

    @property
    def sim_url(self) -> str:
        scheme = "https" if self.forge else "http"
        return f"{scheme}://127.0.0.1:{self.sim_port}"

    def simulator_argv(self, python: str) -> list[str]:
        """The simulator with a demo site that installs the app through the signed-install flow."""
        state = self.settings.state_dir / "simulator.json"
        descriptor = f"{self.web_url}/atlassian-connect.json"
        argv = [python, "-m", "app.cli", "sim", "--port", str(self.sim_port), "--state", str(state)]
        argv += ["--demo", "--install-app", descriptor]  # its API token: in SIM_TOKEN_ENV
        argv += ["--demo-activity", f"{self.activity:g}"]
        if self.forge and self.tls is not None:
            events = f"{self.web_url}/forge/events"
            argv += ["--ssl-certfile", str(self.tls[0]), "--ssl-keyfile", str(self.tls[1])]
            argv += ["--install-forge", events, "--forge-app-id", DEV_FORGE_APP_ID]
        return argv

    def start(self) -> dict[str, str]:
        env = self.environment()
        self.children = self.plan()
        for child in self.children:
            child.process = subprocess.Popen(
                child.argv,
                env=env,
                start_new_session=True,
                pass_fds=() if self.lock_fd is None else (self.lock_fd,),
            )
        return env

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"{self.web_url}/readyz"
        while time.monotonic() < deadline and not self.stopping:
            self.check_alive()
            cafile = str(self.tls[0]) if self.tls else None
            sim_ok = self.sim_port is None or _http_ok(f"{self.sim_url}/_sim/", cafile)
            if _http_ok(url) and sim_ok and self.worker_healthy():
                return
            time.sleep(0.2)
        if not self.stopping:
            raise ConfigError(f"the stack did not become ready within {READY_TIMEOUT:.0f}s")

    def worker_healthy(self) -> bool:
        """A worker refreshed its health key, under the prefix the children use."""
        return _worker_healthy(self.redis_url, self.settings.redis_prefix)

    def check_alive(self) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise ConfigError(f"{child.name} exited with code {child.process.returncode}")
        server = self.redis.process if self.redis is not None else None
        if server is not None and server.poll() is not None:
            # Everything else depends on it: stop the stack with a reason, not limp on.
            raise ConfigError(f"the embedded Redis exited with code {server.returncode}")

    def stop(self) -> None:
        self.stopping = True
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for proc in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        if self.redis is not None:
            self.redis.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _http_ok(url: str, cafile: str | None = None) -> bool:
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=1.0, context=context) as resp:  # noqa: S310 - our own loopback URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _worker_healthy(url: str, prefix: str) -> bool:
    import asyncio

    from redis.exceptions import RedisError

    from app import redis as redis_conn

    async def probe() -> bool:
        client = redis_conn.connect(url)
        try:
            return bool(await client.exists(f"{prefix}queue:health-check"))
        finally:
            await client.aclose()

    try:
        return asyncio.run(probe())
    except (RedisError, OSError, TimeoutError):  # not up yet
        return False


def _given_token(name: str = "REACTOR_DASHBOARD_TOKEN") -> str:
    """Where a token this stack did not generate came from, never the token itself."""
    source = "the environment" if any(k.upper() == name for k in os.environ) else ".env"
    return f"{MASK} (your {name}, from {source})"


def _banner(stack: DevStack) -> list[str]:
    # No bare root URL: the web app serves nothing there (404).
    lines = [
        f"web        {stack.web_url}/atlassian-connect.json  (the app's descriptor; "
        "health /healthz, /readyz)",
        f"dashboard  {stack.web_url}/dashboard",
        f"dashboard token  {stack.dashboard_token or _given_token()}",
        f"redis      {display_url(stack.redis_url)}",
        f"simulator  {stack.sim_url}/wiki  (admin API {stack.sim_url}/_sim/)",
        f"sim user   admin@example.com  api token {stack.sim_api_token}",
    ]
    curl = f"curl --cacert {stack.tls[0]}" if stack.tls else "curl"
    lines.append(f"act as a user  {curl} -X POST {stack.sim_url}/_sim/act/random")
    if stack.activity:
        lines.append(f"demo users act every {stack.activity:g} s (--activity 0: never)")
    if stack.forge:
        lines.append(f"forge      {DEV_FORGE_APP_ID} (events: Connect and Forge)")
    return lines


def _announce_ready(stack: DevStack) -> bool:
    """Print ``ready`` unless a stop was asked for; False when it was.

    The stop signals are held back from the check to the write, and one that arrived
    meanwhile (pending) counts as asked: an interrupted start-up never says ``ready``.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        if stack.stopping or STOP_SIGNALS & signal.sigpending():
            return False
        print("ready", flush=True)
        return True
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def run(
    settings: Settings,
    port: int,
    sim_api_token: str | None = None,
    *,
    forge: bool = False,
    host: str = "127.0.0.1",
    activity: float = 30.0,
) -> int:
    """Run the whole stack until Ctrl-C or SIGTERM; returns the exit code."""
    try:
        lock = lock_state_dir(settings.state_dir)
    except ConfigError as exc:
        print(f"reactor dev: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        return _run_locked(
            settings, port, sim_api_token, forge=forge, host=host, lock=lock, activity=activity
        )
    finally:
        os.close(lock)


def _run_locked(
    settings: Settings,
    port: int,
    sim_api_token: str | None,
    *,
    forge: bool,
    host: str,
    lock: int,
    activity: float,
) -> int:
    stack = DevStack(
        settings,
        port=port or free_port(),
        sim_api_token=sim_api_token,
        forge=forge,
        host=host,
        lock_fd=lock,
        activity=activity,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stack.stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    code = 0
    try:
        stack.start()
        for note in stack.notes:
            print(f"reactor dev: {note}", file=sys.stderr, flush=True)
        stack.wait_ready()
        if not stack.stopping:
            print("\n".join(_banner(stack)), flush=True)
            _announce_ready(stack)
        while not stack.stopping:
            stack.check_alive()
            time.sleep(0.2)
    except ConfigError as exc:
        print(f"reactor dev: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
