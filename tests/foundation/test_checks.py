"""``reactor check``: what a deployment needs before it takes traffic, one line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.checks import redis_reason, run_checks
from app.settings import Settings
from app.tenants import Tenant, TenantStore

PUBLIC = {"base_url": "https://reactor.example.com", "dashboard_token": "o" * 32}


def offline(**values: Any) -> Settings:
    """Settings without Redis (the checks that need none), a key and ``values``."""
    values.setdefault("secret_key", Fernet.generate_key().decode())
    return Settings(_env_file=None, **values)


async def problems_of(settings: Settings) -> list[str]:
    problems, _ = await run_checks(settings)
    return [p for p in problems if not p.startswith("REACTOR_REDIS_URL")]


async def test_a_base_url_atlassian_cannot_reach_is_a_problem(bare_env: Path) -> None:
    """Left at its default, plain http, or naming this machine: the descriptor's baseUrl and
    the JWT audience would be wrong, and no site could install the app."""
    unset = await problems_of(offline(dashboard_token="o" * 32))
    assert unset == [
        "REACTOR_BASE_URL: unset (default http://localhost:8000); set the public https URL "
        "Atlassian calls (the descriptor's baseUrl and the JWT audience)"
    ]
    plain = await problems_of(offline(**{**PUBLIC, "base_url": "http://reactor.example.com"}))
    assert plain == [
        "REACTOR_BASE_URL: http://reactor.example.com is not https; Atlassian installs and "
        "calls only a public https URL"
    ]
    for local in ("https://127.0.0.1:8443", "https://localhost", "https://[::1]:8000"):
        (line,) = await problems_of(offline(**{**PUBLIC, "base_url": local}))
        assert line.startswith(f"REACTOR_BASE_URL: {local} names this machine")
    assert await problems_of(offline(**PUBLIC)) == []


async def test_a_missing_operator_token_is_a_problem(bare_env: Path) -> None:
    settings = offline(base_url=PUBLIC["base_url"])
    assert await problems_of(settings) == [
        "REACTOR_DASHBOARD_TOKEN: unset; the dashboard, the ops API, reactor status and "
        "reactor tenants need an operator token"
    ]


async def test_unknown_reactor_variables_are_listed(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelled setting is silently ignored by the settings (REACTOR_DRYRUN left dry run
    off): check names it, from the environment and from .env, but not the variables the
    project reads elsewhere, nor Kubernetes' service links of a Service named "reactor"."""
    monkeypatch.setenv("REACTOR_DRYRUN", "true")
    for name in ("REACTOR_TEST_REDIS_URL", "REACTOR_SIM_API_TOKEN", "REACTOR_FUZZ_EXAMPLES"):
        monkeypatch.setenv(name, "1")
    for name in ("REACTOR_SERVICE_HOST", "REACTOR_SERVICE_PORT", "REACTOR_PORT_8000_TCP_ADDR"):
        monkeypatch.setenv(name, "10.0.0.1")
    # and those of a Service named "reactor-web" (a bare ..._PORT only with an address)
    for name in ("REACTOR_WEB_SERVICE_HOST", "REACTOR_WEB_SERVICE_PORT_HTTP"):
        monkeypatch.setenv(name, "10.0.0.2")
    monkeypatch.setenv("REACTOR_WEB_PORT", "tcp://10.0.0.2:8000")
    monkeypatch.setenv("REACTOR_METRICS_PORT", "9100")  # not an address: a misspelling
    monkeypatch.setenv("REACTOR_LOG_LEVEL", "info")
    (bare_env / ".env").write_text(
        "# comment\nexport REACTOR_WORKER_CONCURENCY=5\nreactor_base_url=https://x.test\n",
        encoding="utf-8",
    )
    found = await problems_of(offline(**PUBLIC))
    assert found[1].startswith("REACTOR_METRICS_PORT (in the environment): not a setting")
    assert found[:1] + found[2:] == [
        "REACTOR_DRYRUN (in the environment): not a setting, ignored; "
        "did you mean REACTOR_DRY_RUN?",
        "REACTOR_WORKER_CONCURENCY (in the .env): not a setting, ignored; "
        "did you mean REACTOR_WORKER_CONCURRENCY?",
    ]


def test_redis_reasons_keep_the_message_and_mask_credentials() -> None:
    url = "redis://:Sup3rS3cret@cache.internal:6380/0"
    refused = RedisConnectionError("Error 111 connecting to cache.internal:6380. Refused.")
    assert redis_reason(refused, url) == (
        "ConnectionError: Error 111 connecting to cache.internal:6380. Refused."
    )
    leaky = RedisConnectionError(f"cannot use {url} or rediss://bob:hunter2@other:6379/1")
    reason = redis_reason(leaky, url)
    assert "Sup3rS3cret" not in reason and "hunter2" not in reason
    assert "rediss://bob:***@other:6379/1" in reason
    assert redis_reason(TimeoutError(), url) == "timed out"


async def test_redis_failures_name_the_setting_and_the_cause(
    bare_env: Path, redis_target: Any
) -> None:
    """Not a bare class name: the message redis-py gives (host, port, cause), no password."""
    if redis_target.owned is None:
        pytest.skip("needs the embedded server (its database count and no password)")
    port = redis_target.owned.port
    (line,) = await problems_of(offline(**PUBLIC, redis_url=f"redis://127.0.0.1:{port}/99"))
    assert line.startswith(
        f"redis: cannot reach redis://127.0.0.1:{port}/99 (REACTOR_REDIS_URL): ResponseError: "
    )
    assert "DB index is out of range" in line
    url = f"redis://:Sup3rS3cret@127.0.0.1:{port}/1"
    (auth,) = await problems_of(offline(**PUBLIC, redis_url=url))
    assert "Sup3rS3cret" not in auth and "AuthenticationError" in auth
    assert auth.startswith(f"redis: cannot reach redis://:***@127.0.0.1:{port}/1")


async def test_a_secret_key_that_opens_no_stored_tenant_is_a_problem(
    bare_env: Path, settings: Settings, redis: Redis
) -> None:
    """A mistyped, per-host or rotated-away key passed check, then every job of every tenant
    failed with tenant_secret_unreadable until it was dead-lettered."""

    def with_keys(*keys: str) -> Settings:
        public = {
            "base_url": PUBLIC["base_url"],
            "dashboard_token": SecretStr(PUBLIC["dashboard_token"]),
        }
        return settings.model_copy(update={"secret_key": SecretStr(",".join(keys)), **public})

    def key_problems(problems: list[str]) -> list[str]:
        return [p for p in problems if p.startswith("REACTOR_SECRET_KEY")]

    foreign = Fernet.generate_key().decode()
    assert key_problems(await problems_of(with_keys(foreign))) == []  # nothing stored: fine
    store = TenantStore(redis, settings)
    for n in (1, 2):
        await store.upsert(
            Tenant(client_key=f"ck-{n}", shared_secret="s" * 32, base_url=f"https://{n}.test")
        )
    assert key_problems(await problems_of(with_keys(foreign))) == [
        "REACTOR_SECRET_KEY: matches none of the 2 stored tenant secrets tried; their jobs "
        "would fail (tenant_secret_unreadable): keep the key they were sealed with in the "
        "list (comma separated, after the new one)"
    ]
    own = settings.secret_keys[0]
    assert key_problems(await problems_of(with_keys(foreign, own))) == []
    assert key_problems(await problems_of(with_keys(own))) == []
    # uninstalled tenants keep no secret: however many sort first, the ones that do are tried
    for n in range(30):
        site = Tenant(client_key=f"ck-0{n:02d}", shared_secret="s" * 32, base_url=f"https://g{n}.t")
        await store.upsert(site)
        await store.mark_status(site.client_key, "uninstalled")
    assert len(key_problems(await problems_of(with_keys(foreign)))) == 1


async def test_another_deployments_pipeline_in_the_database_is_a_problem(
    bare_env: Path, settings: Settings, redis: Redis, redis_target: Any
) -> None:
    """The prefix does not separate deployments: arq's keys (arq:job:<event id>) carry none and
    event ids do not depend on it, so one finishing an event deleted the other's job. Check
    names the other prefix whose events index (a ZSET of event ids) it finds."""
    public = settings.model_copy(
        update={"base_url": PUBLIC["base_url"], "dashboard_token": SecretStr("o" * 32)}
    )
    ours = settings.redis_prefix

    def shared(problems: list[str]) -> list[str]:
        return [p for p in problems if p.startswith("redis: the database also holds")]

    # ours alone, and keys that only end like an index: nothing to say
    await redis.zadd(f"{ours}events", {"ev_" + "1" * 32: 1})
    await redis.set(f"{ours}string:events", "ev_x")
    await redis.zadd(f"{ours}scores:events", {"alice": 3})
    if redis_target.owned is not None:  # a database of its own (a shared one holds others')
        assert shared(await problems_of(public)) == []

    other = f"{ours}staging:"  # under ours, so the fixture removes it afterwards
    await redis.zadd(f"{other}events", {"ev_" + "2" * 32: 1})
    await redis.zadd(f"{other}queue", {"ev_" + "2" * 32: 1})
    (line,) = [p for p in shared(await problems_of(public)) if repr(other) in p]
    assert line.endswith("give each its own database number (REACTOR_REDIS_URL .../<db>) or server")
    if redis_target.owned is None:
        return
    assert line == (
        f"redis: the database also holds the events of another prefix ({other!r}; ours is "
        f"{ours!r}): another deployment, or an earlier prefix of this one. The prefix does not "
        "separate deployments (arq's keys, arq:job:<event id>, carry none): give each its own "
        "database number (REACTOR_REDIS_URL .../<db>) or server"
    )
