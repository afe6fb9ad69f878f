"""Helpers of the dashboard tests: events, dead letters and an operator's HTTP session."""

from __future__ import annotations

import asyncio
import html
import re
import socket
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from app.atlassian.events import Event, event_id
from app.eventlog import EventLog
from app.jobstate import Attempt, EventRecord
from app.queue import EventQueue
from app.settings import Settings

TOKEN = "test-operator-token"


def make_event(tenant: str = "site-a", content_id: str = "1001", version: int = 1) -> Event:
    ts = int(time.time() * 1000)
    return Event(
        id=event_id(tenant, "page.updated", content_id, version, ts),
        source="connect",
        tenant=tenant,
        type="page.updated",
        content_id=content_id,
        content_type="page",
        timestamp=ts,
        version=version,
        title=f"Page {content_id}",
        raw={
            "page": {"id": int(content_id), "title": f"Page {content_id}"},
            "userAccountId": "5b10ac8d82e05b22cc7d4ef5",
            "sharedSecret": "do-not-show-this-secret",
            "nested": {"access_token": "do-not-show-this-token"},
        },
    )


async def kill(redis: Redis, settings: Settings, event: Event, error: str) -> None:
    """Put ``event`` through the queue and end it dead, as the job layer does."""
    await EventQueue(redis, settings).put(event)
    await redis.zrem(f"{settings.redis_prefix}queue", event.id)
    log = EventLog(redis, settings)
    now = int(time.time() * 1000)
    await log.add_attempt(event.id, Attempt(1, now, 42, "dead", error))
    await log.finish(event.id, event.content_key, "dead", error)


def signed_in(base_url: str, token: str = TOKEN) -> tuple[httpx.Client, str]:
    """An httpx client holding a dashboard session, and the CSRF token of its pages."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=10)
    page = client.get("/dashboard/signin")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce is not None
    answer = client.post(
        "/dashboard/signin",
        data={"csrf": nonce.group(1), "token": token, "next": "/dashboard/"},
    )
    assert answer.status_code == 303, answer.text
    overview = client.get("/dashboard/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', overview.text)
    assert csrf is not None
    return client, csrf.group(1)


def listed_ids(page: str) -> list[str]:
    """The event ids of the rows of a Jobs or Dead letters page, top to bottom."""
    return re.findall(r'<td><a href="/dashboard/jobs/([^"]+)"><code>', page)


def link_to(page: str, text: str) -> str | None:
    """The target of the page's link reading ``text`` (``Next page``, ``First page``), if any."""
    found = re.findall(rf'<a href="([^"]*)"[^>]*>{re.escape(text)}</a>', page)
    assert len(found) <= 1, found
    return html.unescape(found[0]) if found else None


def send_partly(base_url: str, head: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send a request's head and only ``body`` (less than it announces), then read the answer.

    The status and body of the answer; ``socket.timeout`` if the server waits for the rest.
    """
    host, _, port = base_url.removeprefix("http://").partition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed without an answer: {data!r}")
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", header)
        assert length is not None, header
        while len(rest) < int(length.group(1)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(header.split(b" ", 2)[1]), rest


class Reads:
    """What the code under test asked of Redis: whole event records read (each with its stored
    event, the raw payload) and round trips (a command, or a pipeline of them)."""

    def __init__(self) -> None:
        self.whole = 0
        self.round_trips = 0

    def reset(self) -> None:
        self.whole = self.round_trips = 0


def count_reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Count, from now on, the whole records read through ``EventLog`` and every round trip of
    any client of this process."""
    reads = Reads()
    records, record = EventLog.records, EventLog.record
    send = AbstractConnection.send_packed_command

    async def counted_records(self: EventLog, event_ids: Sequence[str]) -> list[EventRecord]:
        reads.whole += len(event_ids)
        return await records(self, event_ids)

    async def counted_record(self: EventLog, event_id: str) -> EventRecord | None:
        reads.whole += 1
        return await record(self, event_id)

    async def counted_send(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        reads.round_trips += 1
        await send(self, *args, **kwargs)

    monkeypatch.setattr(EventLog, "records", counted_records)
    monkeypatch.setattr(EventLog, "record", counted_record)
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted_send)
    return reads


async def hold(
    redis: Redis, settings: Settings, events: Sequence[Event], state: str = "done"
) -> None:
    """Store ``events`` and leave each in ``state`` (done, dead or failed) as the job layer
    does, many at a time."""
    queue, log = EventQueue(redis, settings), EventLog(redis, settings)
    await asyncio.gather(*(queue.put(e) for e in events))
    await redis.zrem(f"{settings.redis_prefix}queue", *(e.id for e in events))

    async def end(event: Event) -> None:
        if state == "failed":
            await log.mark(event.id, "failed", "TransientFailure: 503", next_run=1)
        else:
            await log.finish(event.id, event.content_key, state, f"{state} here")

    for first in range(0, len(events), 200):
        await asyncio.gather(*(end(e) for e in events[first : first + 200]))
