"""``reactor dev``'s supervisor: what it hands its children, probes and prints."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis as sync_redis
from cryptography.fernet import Fernet

from app.devstack import DevStack, _banner
from app.settings import Settings


def test_dev_takes_dotenv_values_like_exported_ones(bare_env: Path, redis_url: str) -> None:
    """The settings read ``.env``; the banner, the readiness probe and the children's defaults
    follow them, not ``os.environ`` alone (a token there crashed the banner, a prefix or a
    Redis URL there made the stack never ready)."""
    prefix = f"acme{uuid.uuid4().hex[:8]}:"
    token = "d" * 32
    (bare_env / ".env").write_text(
        f"REACTOR_DASHBOARD_TOKEN={token}\n"
        f"REACTOR_REDIS_URL={redis_url}\n"
        f"REACTOR_REDIS_PREFIX={prefix}\n"
        f"REACTOR_SECRET_KEY={Fernet.generate_key().decode()}\n"
        "REACTOR_CONNECT_INSTALL_KEYS_URL=https://keys.example.test\n",
        encoding="utf-8",
    )
    settings = Settings(state_dir=bare_env / "state")
    stack = DevStack(settings, port=18001, sim_port=18002, sim_api_token="given")
    env = stack.environment()
    assert stack.redis is None  # the .env's Redis, no embedded one
    assert not (bare_env / "state" / "dashboard_token").exists()
    # given in .env, as if exported: the children read it there, the stack adds no default
    assert "REACTOR_CONNECT_INSTALL_KEYS_URL" not in env
    assert "REACTOR_DASHBOARD_TOKEN" not in env
    lines = _banner(stack)
    banner = "\n".join(lines)
    assert "dashboard token" in banner and "redis" in banner
    # URLs that answer: the descriptor and the dashboard, not the root (404)
    assert lines[0].startswith("web        http://127.0.0.1:18001/atlassian-connect.json  ")
    assert "dashboard  http://127.0.0.1:18001/dashboard" in lines
    assert not any(line.split()[-1] == "http://127.0.0.1:18001/" for line in lines)

    health = f"{prefix}queue:health-check"
    with sync_redis.Redis.from_url(redis_url) as client:
        assert not stack.worker_healthy()
        client.set(health, b"1", ex=60)
        try:
            assert stack.worker_healthy()  # the .env's Redis, under the .env's prefix
        finally:
            client.delete(health)


def test_dev_banner_masks_the_redis_password_and_a_token_it_did_not_make(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exported production token or Redis password is never printed; a token the stack
    generated (and keeps in its state directory) is, since the operator needs it to sign in."""
    exported = "production-operator-token-0123456789"
    monkeypatch.setenv("REACTOR_DASHBOARD_TOKEN", exported)
    monkeypatch.setenv("REACTOR_REDIS_URL", "redis://:Sup3rS3cretRedisPw@127.0.0.1:1/0")
    monkeypatch.setenv("REACTOR_SECRET_KEY", Fernet.generate_key().decode())
    stack = DevStack(Settings(state_dir=bare_env / "state"), port=18001, sim_port=18002)
    stack.environment()
    banner = "\n".join(_banner(stack))
    assert exported not in banner and "Sup3rS3cretRedisPw" not in banner
    assert "redis      redis://:***@127.0.0.1:1/0" in banner
    assert "REACTOR_DASHBOARD_TOKEN, from the environment" in banner

    monkeypatch.delenv("REACTOR_DASHBOARD_TOKEN")
    made = DevStack(Settings(state_dir=bare_env / "state"), port=18001, sim_port=18002)
    made.environment()
    generated = (bare_env / "state" / "dashboard_token").read_text().strip()
    assert f"dashboard token  {generated}" in _banner(made)


def test_dev_owns_its_base_url_and_says_so(bare_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exported production base URL would make the descriptor point away from this stack,
    and the demo install fail a minute later: the stack uses its own, with one line saying so."""
    monkeypatch.setenv("REACTOR_BASE_URL", "https://reactor.example.com")
    monkeypatch.setenv("REACTOR_REDIS_URL", "redis://127.0.0.1:1/0")
    stack = DevStack(Settings(state_dir=bare_env / "state"), port=18001, sim_port=18002)
    env = stack.environment()
    assert env["REACTOR_BASE_URL"] == "http://127.0.0.1:18001"
    assert stack.notes == [
        "REACTOR_BASE_URL=https://reactor.example.com is not this stack's web URL; "
        "using http://127.0.0.1:18001"
    ]
    monkeypatch.setenv("REACTOR_BASE_URL", "http://127.0.0.1:18001")
    same = DevStack(Settings(state_dir=bare_env / "state"), port=18001, sim_port=18002)
    assert same.environment()["REACTOR_BASE_URL"] == "http://127.0.0.1:18001"
    assert same.notes == []


def test_dev_rules_ship_as_package_data() -> None:
    """``reactor dev`` from a wheel or the Docker image reads its rules file from the installed
    package: it must sit in a package and match a package-data pattern of pyproject.toml."""
    import fnmatch
    import tomllib

    from app.devstack import DEV_RULES

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    where = DEV_RULES.relative_to(root)
    package = ".".join(where.parent.parts)
    assert DEV_RULES.is_file() and (DEV_RULES.parent / "__init__.py").is_file()
    assert any(fnmatch.fnmatch(package, p) for p in config["packages"]["find"]["include"])
    patterns = [*config["package-data"].get(package, []), *config["package-data"].get("*", [])]
    assert any(fnmatch.fnmatch(where.name, p) for p in patterns)
