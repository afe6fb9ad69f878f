"""Helpers of the dashboard tests: events, dead letters and an operator's HTTP session."""

from __future__ import annotations

import re
import time

import httpx
from redis.asyncio import Redis

from app.atlassian.events import Event, event_id
from app.eventlog import EventLog
from app.jobstate import Attempt
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
