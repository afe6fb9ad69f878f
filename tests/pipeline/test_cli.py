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
from app.settings import Settings
from workers.dispatch import JobContext

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "events"
Reactor = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def reactor(settings: Settings, tmp_path: Path) -> Reactor:
    assert settings.redis_url is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
        "REACTOR_LOG_FORMAT": "console",
        "REACTOR_LOG_LEVEL": "warning",
    }

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    return run


async def test_receive_then_dead_letter_show_retry_discard(
    redis: Redis,
    settings: Settings,
    reactor: Reactor,
    burst_worker: Callable[..., Worker],
) -> None:
    run = reactor
    page = str(FIXTURES / "connect" / "page_updated.json")
    forge = str(FIXTURES / "forge" / "created_comment.json")
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
