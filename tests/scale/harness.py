"""Helpers of the process-level tests: a stack fixture, event ids, states and effects read back."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import redis as redis_conn
from app.atlassian.events import from_connect
from app.eventlog import EventLog
from bench.stack import Stack, page_body

StackFactory = Callable[..., Stack]
STAMP = re.compile(r"stamp (\S+) v(\d+) (\S+)</p>")


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """``make_stack(webs=, workers=, env=)`` starts a deployment; it is stopped after the test."""
    made: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        kwargs.setdefault("log_dir", tmp_path / "logs")
        stack = Stack(tmp_path / f"stack{len(made)}", **kwargs)
        made.append(stack)
        stack.start()
        return stack

    yield make
    for stack in made:
        stack.stop()


def event_id(tenant: str, page_id: str, version: int) -> str:
    return from_connect(tenant, "page_updated", page_body(page_id, version)).id


async def states(stack: Stack, ids: list[str]) -> dict[str, str]:
    """The pipeline state of each event id (``missing`` when it has no record)."""
    redis = redis_conn.connect(str(stack.redis_url))
    try:
        log = EventLog(redis, stack.settings())
        found = {r.id: r.state for r in await log.records(ids)}
        return {i: found.get(i, "missing") for i in ids}
    finally:
        await redis.aclose()


async def stamps(stack: Stack, page_id: str) -> list[tuple[str, int, str]]:
    """(tenant, version, event id) of each stamp comment on a page, in creation order."""
    found = []
    for comment in await stack.comments(page_id):
        match = STAMP.search(comment["body"]["storage"]["value"])
        if match:
            found.append((match.group(1), int(match.group(2)), match.group(3)))
    return found
