"""The container files stay consistent with the CLI and the settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from app.cli import build_parser
from app.settings import Settings
from workers.loading import load_reactions

ROOT = Path(__file__).resolve().parents[2]


def _setting_env_names() -> set[str]:
    return {f"REACTOR_{name.upper()}" for name in Settings.model_fields}


def test_compose_env_names_are_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    names: set[str] = set()
    for service in compose["services"].values():
        names.update(service.get("environment", {}) or {})
    assert names, "compose configures nothing"
    assert names <= _setting_env_names(), names - _setting_env_names()
    assert "--appendonly" in compose["services"]["redis"]["command"]


def test_compose_trusts_forwarded_addresses_only_on_a_port_published_on_loopback() -> None:
    """With "--forwarded-allow-ips *" anyone reaching the port could name any address in
    X-Forwarded-For (and slip past the sign-in throttle): only the host's proxy may reach it."""
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    command = web["command"]
    trusted = command[command.index("--forwarded-allow-ips") + 1]
    published = [str(port) for port in web["ports"]]
    assert published, "compose publishes no web port"
    if trusted == "*":
        assert all(port.startswith("127.0.0.1:") for port in published), published


def test_compose_and_dockerfile_commands_exist_in_the_cli() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("web", "worker"):
        assert compose["services"][name]["command"][0] in commands
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[0] in commands
    assert "USER reactor" in dockerfile


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def test_the_image_bakes_in_no_health_check_that_fails_workers_or_other_ports() -> None:
    """One image runs `reactor web` (any port, TLS or not) and `reactor worker` (no port):
    a fixed probe of http://127.0.0.1:8000 would mark some of them unhealthy for ever."""
    instructions = [
        line.split()[0]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith((" ", "#"))
    ]
    assert "HEALTHCHECK" not in instructions


def test_each_compose_service_has_a_health_check_of_its_own_kind() -> None:
    services = _compose()["services"]
    web = services["web"]
    command = web["command"]
    port = command[command.index("--port") + 1]
    scheme = "https" if "--ssl-certfile" in command else "http"
    probe = " ".join(web["healthcheck"]["test"])
    assert f"{scheme}://127.0.0.1:{port}/healthz" in probe
    worker = services["worker"]["healthcheck"]["test"]
    assert worker == ["CMD", "reactor", "worker", "--check"]  # per container: its heartbeat


def test_every_compose_service_comes_back_after_a_crash_or_a_reboot() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("restart") == "unless-stopped", name


def test_compose_workers_load_the_rules_file_they_mount() -> None:
    """Without reactions every event ends "no reactions": the workers get a rules file."""
    worker = _compose()["services"]["worker"]
    inside = worker["environment"]["REACTOR_RULES_FILE"]
    (mount,) = [v for v in worker["volumes"] if str(v).split(":")[-2] == inside]
    default = re.fullmatch(r"\$\{RULES_FILE:-(.+)\}:" + re.escape(inside) + ":ro", mount)
    assert default is not None, mount
    rules = ROOT / default.group(1)
    settings = Settings(rules_file=rules, _env_file=None)  # type: ignore[call-arg]
    assert len(load_reactions(settings)) > 0


def test_compose_web_and_workers_share_settings_and_rules_file() -> None:
    """The dashboard's Reactions page shows the web process's rules file and modules: with
    them on the workers alone it showed none while both workers ran one."""
    services = _compose()["services"]
    web, worker = services["web"], services["worker"]
    assert web["environment"] == worker["environment"]
    assert web["environment"]["REACTOR_RULES_FILE"]
    assert web["volumes"] == worker["volumes"]


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in _setting_env_names() if f"`{n}`" not in readme)
    assert not missing, f"README configuration table lacks {missing}"


def test_compose_starts_in_dry_run_until_the_operator_says_otherwise() -> None:
    """Its workers load a rules file that edits pages: a first `docker compose up` must show
    what they would write before they write it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["worker"]["environment"]
    assert env["REACTOR_DRY_RUN"] == "${REACTOR_DRY_RUN:-true}"
