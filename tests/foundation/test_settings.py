from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from app.errors import ConfigError
from app.queue import EventQueue
from app.settings import Settings, load_settings
from tests.dashboard.helpers import make_event


def test_defaults_need_redis_and_secret_outside_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REACTOR_REDIS_URL", "REACTOR_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None)
    assert settings.redis_url is None
    problems = settings.require_production()
    assert any(p.startswith("REACTOR_REDIS_URL") for p in problems)
    assert any(p.startswith("REACTOR_SECRET_KEY") for p in problems)


@pytest.mark.parametrize(
    "url",
    ["redis://h:6379/0", "rediss://h:6380", "unix:///tmp/r.sock", "redis+sentinel://s:26379/m"],
)
def test_accepted_redis_schemes(url: str) -> None:
    assert load_settings(redis_url=url, _env_file=None).redis_url == url


def test_every_problem_is_reported_on_its_own_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            redis_url="http://nope",
            base_url="ftp://x",
            secret_key="not-a-key",
            log_level="loud",
            _env_file=None,
        )
    problems = info.value.problems
    assert len(problems) == 4
    assert problems[0].startswith("REACTOR_REDIS_URL: scheme must be one of")
    assert any(p.startswith("REACTOR_BASE_URL: must be an absolute") for p in problems)
    assert any(p.startswith("REACTOR_SECRET_KEY:") for p in problems)
    assert any(p.startswith("REACTOR_LOG_LEVEL:") for p in problems)
    assert all("not-a-key" not in p for p in problems), "a secret leaked into an error"


def test_secret_key_list_encrypts_with_first() -> None:
    a, b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = load_settings(secret_key=f"{a}, {b}", _env_file=None)
    assert settings.secret_keys == [a, b]


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTOR_BASE_URL", "https://reactor.example.com/")
    monkeypatch.setenv("REACTOR_DASHBOARD_TOKEN", "first-operator-token,second-operator-token")
    settings = load_settings(_env_file=None)
    assert settings.base_url == "https://reactor.example.com"
    assert settings.dashboard_tokens == ["first-operator-token", "second-operator-token"]


def test_a_short_operator_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(dashboard_token="long-enough-operator-token,hunter2", _env_file=None)
    [problem] = info.value.problems
    assert problem.startswith("REACTOR_DASHBOARD_TOKEN: each operator token must be at least 16")
    assert "hunter2" not in str(info.value)


def test_supersede_types_must_name_event_types() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(supersede_types="page.updated, page.bogus", _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith("REACTOR_SUPERSEDE_TYPES: ") and "page.bogus" in problem
    assert "page.updated," not in problem.split(";")[0]  # only the unknown one is named
    ok = load_settings(supersede_types="page.updated,*", _env_file=None)
    assert ok.supersede_event_types == {"page.updated", "*"}


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379/mymaster/x",
        "redis+sentinel://127.0.0.1:port/mymaster",
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/mymaster?db=two",
        "redis://:s3cret-pw@127.0.0.1:notaport/0",
        "rediss://:s3cret-pw@127.0.0.1:99999/0",
        "redis://:s3cret-pw@127.0.0.1:6379/abc",  # redis-py took db 0, arq failed later
        "redis://:s3cret-pw@127.0.0.1:6379/?db=x",
        "redis://:s3cret-pw@127.0.0.1:6379/0/",  # arq read "0/" as the database
    ],
)
def test_a_malformed_redis_url_is_one_line_at_start(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(redis_url=url, _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith("REACTOR_REDIS_URL: ")
    assert "s3cret-pw" not in problem


def test_a_sentinel_url_with_a_database() -> None:
    url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/mymaster/3"
    assert load_settings(redis_url=url, _env_file=None).redis_url == url


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job_timeout_seconds", "inf"),
        ("job_timeout_seconds", "1e300"),  # Redis refused the lock time: a false "lost Redis"
        ("budget_burst_per_second", "inf"),
        ("retry_delays", "10,nan"),
        ("retry_delays", "10,1e400"),
    ],
)
def test_endless_or_absurd_durations_and_rates_are_refused(field: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: value}, _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith(f"REACTOR_{field.upper()}: ")


def test_records_must_outlast_the_longest_retry() -> None:
    """A retry due after its record expired would find nothing to run (and its content's line
    would have lost its head)."""
    with pytest.raises(ConfigError) as info:
        load_settings(event_retention_seconds=3600, _env_file=None)  # 7200 s delay + 20 %
    (problem,) = info.value.problems
    assert problem.startswith("REACTOR_EVENT_RETENTION_SECONDS: must outlast the longest retry")
    assert load_settings(event_retention_seconds=3600, retry_delays="10,60,300", _env_file=None)


@pytest.mark.parametrize(
    "field",
    ["dedupe_window_seconds", "event_retention_seconds", "dead_letter_retention_seconds"],
)
@pytest.mark.parametrize("value", ["99999999999999999999", "9223372036854775807", "31536001"])
def test_windows_and_retentions_beyond_a_year_are_refused(field: str, value: str) -> None:
    """Redis refused such an expiry at every put ("event store unavailable"), after a start
    and a `reactor check` that had passed."""
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: value}, _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith(f"REACTOR_{field.upper()}: ")
    assert "31536000" in problem


async def test_the_longest_windows_and_retentions_still_store_events(
    settings: Settings, redis: Redis
) -> None:
    year = 365 * 24 * 3600
    longest = settings.model_copy(
        update={
            "dedupe_window_seconds": year,
            "event_retention_seconds": year,
            "dead_letter_retention_seconds": year,
        }
    )
    load_settings(  # the bounds are accepted together, with the longest retry delays too
        dedupe_window_seconds=year,
        event_retention_seconds=year,
        dead_letter_retention_seconds=year,
        retry_delays=f"{7 * 24 * 3600}",
        retry_jitter=1.0,
        _env_file=None,
    )
    queue = EventQueue(redis, longest)
    event = make_event()
    assert await queue.put(event)
    assert not await queue.put(event)  # remembered: a duplicate
    assert await redis.ttl(f"{settings.redis_prefix}event:{event.id}") > year - 60


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret-pw@127.0.0.1:6379/0?max_connections=-1", "max_connections must be"),
        ("redis://:s3cret-pw@127.0.0.1:6379/0?max_connections=0", "max_connections must be"),
        ("redis://:s3cret-pw@h:6379/0?socket_connect_timeout=nan", "socket_connect_timeout"),
        ("redis://:s3cret-pw@h:6379/0?socket_connect_timeout=0", "socket_connect_timeout"),
        ("redis://:s3cret-pw@h:6379/0?socket_connect_timeout=-1", "socket_connect_timeout"),
        ("redis://:s3cret-pw@h:6379/0?socket_connect_timeout=inf", "socket_connect_timeout"),
        ("redis://:s3cret-pw@h:6379/0?retry_on_timeout=maybe", "retry_on_timeout must be"),
        ("redis://:s3cret-pw@h:6379/?db=1&db=2", "db is given more than once"),
        ("redis://:s3cret-pw@h:6379/0?frobnicate=1", "option frobnicate is not supported"),
        ("redis://", "must name a host"),
        ("redis:///0", "must name a host"),
        ("rediss://:s3cret-pw@:6380/0", "must name a host"),
        ("unix://", "must name the socket's path"),
    ],
)
def test_a_redis_url_option_no_connection_can_use_is_one_line_at_start(
    url: str, expected: str
) -> None:
    """These got through to the first connection: a traceback, or a URL that never
    connects reported as an unreachable server, or localhost:6379 for no host."""
    with pytest.raises(ConfigError) as info:
        load_settings(redis_url=url, _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith("REACTOR_REDIS_URL: ") and expected in problem, problem
    assert "s3cret-pw" not in problem and "REACTOR_REDIS_URL: REACTOR" not in problem


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0?max_connections=1&socket_connect_timeout=0.5&retry_on_timeout=false",
        "rediss://h:6380/0?ssl_check_hostname=True&retry_on_timeout=1",
        "redis://h/?db=3",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_redis_url_options_within_range_are_accepted(url: str) -> None:
    assert load_settings(redis_url=url, _env_file=None).redis_url == url


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("base_url", "https://exa mple.com"),
        ("base_url", "https://x.com:99999"),
        ("base_url", "https://x.com:port"),
        ("base_url", "https://:443"),
        ("base_url", "https://x.com/a b"),
        ("connect_install_keys_url", ""),
        ("connect_install_keys_url", "not a url"),
        ("connect_install_keys_url", "https://[bad"),
        ("connect_install_keys_url", "ftp://keys.example.com"),
        ("connect_install_keys_url", "https://keys.example.com:70000"),
        ("connect_oauth_url", "https://oauth example.com"),
        ("forge_jwks_url", "https://x.com:-1/jwks.json"),
    ],
)
def test_a_malformed_service_url_is_one_line_at_start(field: str, url: str) -> None:
    """These passed `reactor check`; the failure came at run time, as an unreachable key
    server (503 to every install) or a descriptor and JWT audience that cannot work."""
    with pytest.raises(ConfigError) as info:
        load_settings(**{field: url}, _env_file=None)
    (problem,) = info.value.problems
    assert problem.startswith(f"REACTOR_{field.upper()}: "), problem


@pytest.mark.parametrize(
    "url", ["https://reactor.example.com", "http://127.0.0.1:8000/app", "https://[::1]:8443"]
)
def test_well_formed_service_urls_are_accepted(url: str) -> None:
    settings = load_settings(
        base_url=url,
        connect_install_keys_url=f"{url}/_sim/install-keys",
        connect_oauth_url=url,
        forge_jwks_url=f"{url}/jwks.json",
        _env_file=None,
    )
    assert settings.base_url == url and settings.connect_oauth_url == url
