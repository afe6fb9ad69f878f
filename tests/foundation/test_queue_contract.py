from __future__ import annotations

from redis.asyncio import Redis

from app.atlassian.events import from_connect
from app.queue import EventQueue
from app.settings import Settings

PAGE_UPDATED = {
    "userAccountId": "712020:actor",
    "accountType": "customer",
    "updateTrigger": "edit_page",
    "timestamp": 1788716539192,
    "page": {"idAsString": "10000001", "id": 10000001, "spaceKey": "ENG", "version": 2},
}


async def test_put_stores_once_and_schedules_a_job(
    redis: Redis,
    settings: Settings,
    burst_worker,  # type: ignore[no-untyped-def]
) -> None:
    queue = EventQueue(redis, settings)
    event = from_connect("tenant-a", "page_updated", PAGE_UPDATED)
    assert await queue.put(event) is True
    assert await queue.put(event) is False
    assert await queue.get(event.id) == event
    worker = burst_worker()
    await worker.main()
    assert worker.jobs_complete == 1
    assert await queue.put(event) is False, "dedupe must outlive the finished job"
