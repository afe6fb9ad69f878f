"""``reactor dlq retry|discard`` leave the same audit trail as the dashboard's actions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from app.dashboard.audit import AuditLog
from app.dlq import DeadLetters
from app.settings import Settings
from tests.dashboard.helpers import kill, make_event

ROOT = Path(__file__).parents[2]


async def reactor(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert settings.redis_url is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REACTOR_REDIS_URL": settings.redis_url,
        "REACTOR_REDIS_PREFIX": settings.redis_prefix,
        "REACTOR_LOG_FORMAT": "console",
        "REACTOR_LOG_LEVEL": "warning",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "dlq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_dlq_actions_from_the_shell_are_audited_as_cli(
    redis: Redis, settings: Settings, tmp_path: Path
) -> None:
    one, two, three = (make_event(content_id=c) for c in ("31", "32", "33"))
    for event in (one, two, three):
        await kill(redis, settings, event, "NotFound: 404")

    retried = await reactor(settings, tmp_path, "retry", one.id, "ev_unknown")
    assert retried.returncode == 0, retried.stderr
    discarded = await reactor(settings, tmp_path, "discard", "--all", "--tenant", "site-a")
    assert discarded.returncode == 0, discarded.stderr
    missing = await reactor(settings, tmp_path, "retry", one.id)
    assert missing.returncode == 1
    assert await DeadLetters(redis, settings).count() == 0

    newest_first = await AuditLog(redis, settings.redis_prefix).recent(10)
    assert [(e.operator, e.action, e.outcome) for e in newest_first] == [
        ("cli", "dead_letter_retry", "failed"),
        ("cli", "dead_letter_discard", "ok"),
        ("cli", "dead_letter_retry", "ok"),
    ]
    failed, discard, retry = newest_first
    assert retry.target == f"{one.id},ev_unknown"
    assert retry.detail["ids"] == [one.id] and retry.detail["not_dead"] == ["ev_unknown"]
    assert retry.detail["via"] == "cli"
    assert discard.target == "all" and sorted(discard.detail["ids"]) == sorted([two.id, three.id])
    assert discard.detail["filter"] == {"tenant": "site-a", "type": None}
    assert failed.detail["count"] == 0
