"""The container files stay consistent with the CLI and the settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from app.cli import build_parser
from app.settings import Settings

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
    assert "USER reactor" in dockerfile and "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in _setting_env_names() if f"`{n}`" not in readme)
    assert not missing, f"README configuration table lacks {missing}"
