"""`reactor receive` and `reactor dlq ...` as a user runs them: separate processes, real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from app.errors import PermanentFailure
from app.eventlog import EventLog
from app.masking import MASK
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.dashboard.helpers import kill, make_event
from workers.dispatch import JobContext

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "events"
Reactor = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


def cli(cwd: Path, args: tuple[str, ...], **env: str) -> subprocess.CompletedProcess[str]:
    """``reactor ARGS`` in a subprocess with only ``env`` of the REACTOR_* settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    full_env |= {"PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def reactor(settings: Settings, tmp_path: Path) -> Reactor:
    assert settings.redis_url is not None
    env = {
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
        "REACTOR_LOG_FORMAT": "console",
        "REACTOR_LOG_LEVEL": "warning",
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli, tmp_path, args, **env)

    return run


async def install(redis: Redis, settings: Settings, client_key: str) -> None:
    tenant = Tenant(client_key, shared_secret="s" * 32, base_url="https://a.atlassian.net/wiki")
    await TenantStore(redis, settings).upsert(tenant)


async def test_receive_then_dead_letter_show_retry_discard(
    redis: Redis,
    settings: Settings,
    reactor: Reactor,
    burst_worker: Callable[..., Worker],
) -> None:
    run = reactor
    page = str(FIXTURES / "connect" / "page_updated.json")
    forge = str(FIXTURES / "forge" / "created_comment.json")
    await install(redis, settings, "site-a")
    received = await run("receive", "--tenant", "site-a", "--event", "page_updated", page)
    assert received.returncode == 0, received.stderr
    first = json.loads(received.stdout)
    assert (first["type"], first["duplicate"]) == ("page.updated", False)
    again = await run("receive", "--tenant", "site-a", "--event", "page.updated", page)
    assert json.loads(again.stdout) == {**first, "duplicate": True}
    comment = await run("receive", "--tenant", "site-a", forge)
    assert json.loads(comment.stdout)["type"] == "comment.created"

    async def reject(event: object, job: JobContext) -> None:
        raise PermanentFailure("permission denied on page 1188560897")

    await burst_worker(dispatch=reject).main()
    listed = await run("dlq", "list", "--json", "--type", "page.updated")
    assert [r["id"] for r in json.loads(listed.stdout)] == [first["id"]]
    shown = await run("dlq", "show", first["id"])
    detail = json.loads(shown.stdout)
    assert (
        detail["attempts"][0]["error"] == "PermanentFailure: permission denied on page 1188560897"
    )
    # each attempt says how it ended and which replay it belonged to
    assert (detail["attempts"][0]["outcome"], detail["attempts"][0]["replay"]) == ("dead", 0)
    assert detail["event"]["content_id"] == "1188560897"

    replayed = await run("dlq", "retry", first["id"])
    assert replayed.stdout.strip() == f"replayed {first['id']}"
    record = await EventLog(redis, settings).record(first["id"])
    assert record is not None and record.state == "queued"
    missing = await run("dlq", "retry", first["id"])
    assert missing.returncode == 1 and "not in the dead-letter store" in missing.stderr

    discarded = await run("dlq", "discard", "--all", "--tenant", "site-a")
    assert discarded.returncode == 0 and discarded.stdout.count("discarded ") == 1
    empty = await run("dlq", "list", "--json")
    assert json.loads(empty.stdout) == []


async def test_receive_rejects_unknown_payloads(reactor: Reactor, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"page": {"title": "no id"}}))
    result = await reactor("receive", "--tenant", "t", "--event", "page_updated", str(bad))
    assert result.returncode == 1 and "no content id" in result.stderr
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({"page": {"id": 1, "version": 2}}))
    unnamed = await reactor("receive", "--tenant", "t", str(connect))  # no --event
    assert unnamed.returncode == 1 and "names no eventType" in unnamed.stderr
    assert "pass --event" in unnamed.stderr and "Traceback" not in unnamed.stderr


async def test_receive_refuses_a_tenant_that_is_not_installed(
    redis: Redis, settings: Settings, reactor: Reactor
) -> None:
    """Its events would be deferred forever: refused unless asked for explicitly."""
    page = str(FIXTURES / "connect" / "page_updated.json")
    refused = await reactor("receive", "--tenant", "nobody", "--event", "page_updated", page)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "tenant 'nobody' is not installed" in refused.stderr
    assert "--allow-unknown-tenant" in refused.stderr and "Traceback" not in refused.stderr
    empty = await reactor("receive", "--tenant", "", "--event", "page_updated", page)
    assert empty.returncode == 2 and "argument --tenant: must not be empty" in empty.stderr
    events = EventLog(redis, settings).keys.events  # every stored event, by arrival
    assert await redis.zcard(events) == 0

    await install(redis, settings, "site-a")
    await TenantStore(redis, settings).mark_status("site-a", "uninstalled")
    gone = await reactor("receive", "--tenant", "site-a", "--event", "page_updated", page)
    assert gone.returncode == 1 and "tenant 'site-a' is uninstalled" in gone.stderr

    forced = await reactor(
        "receive", "--tenant", "nobody", "--allow-unknown-tenant", "--event", "page_updated", page
    )
    assert forced.returncode == 0, forced.stderr
    assert "not installed" in forced.stderr  # still said, as a warning
    assert await redis.zcard(events) == 1
    assert "--allow-unknown-tenant" in (await reactor("receive", "--help")).stdout


async def test_dlq_show_masks_secrets_of_the_payload(
    redis: Redis, settings: Settings, reactor: Reactor
) -> None:
    event = make_event()
    await kill(redis, settings, event, "403 forbidden")
    shown = await reactor("dlq", "show", event.id)
    assert shown.returncode == 0, shown.stderr
    assert "do-not-show-this-secret" not in shown.stdout
    assert "do-not-show-this-token" not in shown.stdout
    raw = json.loads(shown.stdout)["event"]["raw"]
    assert raw["sharedSecret"] == MASK and raw["nested"]["access_token"] == MASK
    assert raw["page"]["title"] == "Page 1001"  # the rest is shown as it is


async def test_dlq_discard_names_an_id_that_is_not_dead(
    redis: Redis, settings: Settings, reactor: Reactor
) -> None:
    event = make_event()
    await kill(redis, settings, event, "403 forbidden")
    missing = await reactor("dlq", "discard", "nope", event.id)
    assert missing.returncode == 0 and missing.stdout.strip() == f"discarded {event.id}"
    assert missing.stderr.strip() == "reactor: nope is not in the dead-letter store"
    alone = await reactor("dlq", "discard", "nope")
    assert alone.returncode == 1
    assert alone.stderr.strip() == "reactor: nope is not in the dead-letter store"


async def test_dlq_actions_refuse_selections_they_would_have_to_guess_at(
    redis: Redis, settings: Settings, reactor: Reactor
) -> None:
    """Ids with --all, an empty filter, filters with ids: refused (exit 2), nothing touched."""
    mine, other = make_event(), make_event(tenant="site-b", content_id="2002")
    for event in (mine, other):
        await kill(redis, settings, event, "boom")
    for argv in (
        ("dlq", "discard", mine.id, "--all"),
        ("dlq", "discard", "--all", "--tenant", ""),
        ("dlq", "retry", mine.id, "--tenant", "site-a"),
        ("dlq", "retry", "--all", "--type", "page.edited"),
    ):
        refused = await reactor(*argv)
        assert refused.returncode == 2, (argv, refused.stdout, refused.stderr)
        assert "Traceback" not in refused.stderr
    dead = await redis.zrange(f"{settings.redis_prefix}dlq", 0, -1)
    assert sorted(d.decode() for d in dead) == sorted([mine.id, other.id])
    nothing = await reactor("dlq", "retry", "--all", "--tenant", "site-x")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert "no dead letter matched" in nothing.stderr
    # The Connect name of a type selects the same dead letters as its own name.
    by_connect_name = await reactor("dlq", "discard", "--all", "--type", "page_updated")
    assert by_connect_name.returncode == 0
    assert sorted(by_connect_name.stdout.split()) == sorted(
        ["discarded", mine.id, "discarded", other.id]
    )


@pytest.mark.parametrize(
    "args",
    [
        ("dlq", "list"),
        ("dlq", "show", "ev_1"),
        ("dlq", "retry", "ev_1"),
        ("dlq", "discard", "--all"),
    ],
)
def test_dlq_with_redis_unreachable_says_so_in_one_line(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    result = cli(tmp_path, args, REACTOR_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "reactor: the event store is unavailable (ConnectionError)\n"


def test_dlq_with_a_stalled_redis_gives_up_within_the_bound(
    tmp_path: Path, silent_server: int
) -> None:
    result = cli(
        tmp_path,
        ("dlq", "list"),
        REACTOR_REDIS_URL=f"redis://127.0.0.1:{silent_server}/0",
        REACTOR_REDIS_TIMEOUT_SECONDS="0.5",
    )
    assert result.returncode == 1
    assert result.stderr == "reactor: the event store is unavailable (TimeoutError)\n"


@pytest.mark.parametrize("limit", ["0", "-1"])
async def test_dlq_list_refuses_a_limit_below_one(reactor: Reactor, limit: str) -> None:
    result = await reactor("dlq", "list", "--limit", limit)
    assert result.returncode == 2 and result.stdout == ""
    assert f"argument --limit: must be at least 1, not {limit}" in result.stderr


async def test_a_replay_of_a_run_a_worker_is_still_closing_says_to_try_again(
    redis: Redis, settings: Settings, reactor: Reactor
) -> None:
    event = make_event(content_id="3003")
    await kill(redis, settings, event, "boom")
    await redis.set(f"arq:in-progress:{event.id}", b"1", px=20_000)
    try:
        busy = await reactor("dlq", "retry", event.id)
    finally:
        await redis.delete(f"arq:in-progress:{event.id}")
    assert busy.returncode == 1 and "still closing that run; try again" in busy.stderr
    assert "not in the dead-letter store" not in busy.stderr
    again = await reactor("dlq", "retry", event.id)
    assert again.returncode == 0 and again.stdout.strip() == f"replayed {event.id}"


def test_the_worker_health_probe_is_one_line_when_redis_cannot_be_reached(
    tmp_path: Path,
) -> None:
    """``reactor worker --check`` is a container health check: no retries, no traceback, and
    the password never printed."""
    url = "redis://:probe-secret-pw@127.0.0.1:1/0"
    result = cli(tmp_path, ("worker", "--check"), REACTOR_REDIS_URL=url)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "reactor: redis: cannot reach redis://:***@127.0.0.1:1/0 (ConnectionError)"
    )
    assert "probe-secret-pw" not in result.stdout + result.stderr


async def test_dlq_list_read_by_a_pipe_that_closes_early_is_no_store_failure(
    redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    """`reactor dlq list | head -1`: the reader leaves, and that is not the event store's
    fault (it used to say "the event store is unavailable (BrokenPipeError)")."""
    from app.atlassian.events import from_connect
    from app.dlq import DeadLetters
    from app.queue import EventQueue

    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    raw = json.loads((FIXTURES / "connect" / "page_updated.json").read_text())
    for n in range(1500):
        raw["page"]["id"] = 10_000 + n
        event = from_connect("site-a", "page_updated", raw)
        await queue.put(event)
        await log.finish(event.id, event.content_key, "dead", "x" * 80)
    assert len(await DeadLetters(redis, settings).find(limit=2000)) == 1500
    assert settings.redis_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
    }
    listing = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dlq", "list"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert listing.stdout is not None and listing.stderr is not None
    assert listing.stdout.readline().startswith("ev_")
    listing.stdout.close()  # the reader leaves after one line, as `head -n 1` does
    errors = listing.stderr.read()
    assert listing.wait(timeout=60) == 0
    assert "unavailable" not in errors and "Traceback" not in errors


async def test_dlq_list_never_writes_terminal_control_sequences(
    redis: Redis, settings: Settings, reactor: Reactor
) -> None:
    """A stored reason (an exception's text) or tenant holding escape sequences is shown
    escaped: written raw it could retitle the terminal, recolour it or rewrite earlier lines."""
    hostile = "boom\x1b]0;PWNED\x07\x1b[31mred\u202etxt.exe\nsecond line"
    event = make_event(tenant="site\x1b[2Jcleared", content_id="3004")
    await kill(redis, settings, event, hostile)
    listed = await reactor("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line
    assert "site\\x1b[2Jcleared" in line
    assert "boom\\x1b]0;PWNED\\x07\\x1b[31mred\\u202etxt.exe second line" in line
