"""Reconciliation state in a real Redis, and the seen-version probe over the pipeline's keys."""

from __future__ import annotations

from redis.asyncio import Redis

from app.atlassian.events import Event, event_id
from app.jobstate import Keys
from app.queue import EventQueue
from app.reconcile_state import Progress, ReconcileState, TrashProgress
from app.settings import Settings

TYPES = ("page.created", "page.updated")


def _event(version: int, type_: str = "page.updated", tenant: str = "t1") -> Event:
    return Event(
        id=event_id(tenant, type_, "42", version, 1_700_000_000_000),
        source="connect",
        tenant=tenant,
        type=type_,
        content_id="42",
        content_type="page",
        timestamp=1_700_000_000_000,
        version=version,
    )


async def test_seen_versions_come_from_the_pipelines_records(
    redis: Redis, settings: Settings
) -> None:
    queue = EventQueue(redis, settings, batch=False)
    assert await queue.put(_event(1, "page.created"))
    assert await queue.put(_event(3))
    assert await queue.put(_event(4, tenant="other"))
    state = ReconcileState(redis, settings.redis_prefix)
    asks = [(TYPES, "42", range(1, 6)), (("page.trashed",), "42", [3])]
    assert await state.seen("t1", asks) == [{1, 3}, set()]
    # after the dedupe window the event record still says the version was seen ...
    keys = Keys(settings.redis_prefix)
    await redis.delete(keys.dedupe(_event(3).id))
    assert await state.seen("t1", [(TYPES, "42", [3])]) == [{3}]
    # ... and once both are gone it is unknown again
    await redis.delete(keys.event(_event(3).id))
    assert await state.seen("t1", [(TYPES, "42", [3])]) == [set()]


async def test_progress_watermark_and_summary(redis: Redis, settings: Settings) -> None:
    state = ReconcileState(redis, settings.redis_prefix)
    assert await state.progress("auto", "t1") is None and await state.watermark("t1") is None
    progress = Progress(since=1_000, started=5_000, upper=4_000, items=7, found=2, enqueued=1)
    await state.save_progress("auto", "t1", progress)
    assert await state.progress("auto", "t1") == progress
    assert await state.progress("manual", "t1") is None  # slots are separate
    # the search under way, then none (its end): the cursor is kept, then cleared
    url = "https://site.example.net/wiki/rest/api/search?cql=x&next=true&cursor=b2Zmc2V0OjUw"
    searching = Progress(since=1_000, started=5_000, cursor=url, reach=9_000, back=120_000)
    await state.save_progress("manual", "t1", searching)
    assert await state.progress("manual", "t1") == searching
    searching.cursor = searching.reach = searching.back = None
    await state.save_progress("manual", "t1", searching)
    assert await state.progress("manual", "t1") == searching
    await state.complete("manual", "t1", progress, 6_000, advance=False)
    assert await state.watermark("t1") is None
    await state.complete("auto", "t1", progress, 6_000, advance=True)
    assert await state.progress("auto", "t1") is None
    assert await state.watermark("t1") == 5_000  # the sweep's start, not its end
    last = await state.last("t1")
    assert last["finished"] == "6000" and last["enqueued"] == "1" and last["slot"] == "auto"
    keys = [k.decode() async for k in redis.scan_iter(match="*reconcile*")]
    assert keys and all(k.startswith(settings.redis_prefix) for k in keys)


async def test_lock_is_held_by_one_sweep(redis: Redis, settings: Settings) -> None:
    state = ReconcileState(redis, settings.redis_prefix)
    token = await state.lock("t1", 5)
    assert token is not None
    assert await state.lock("t1", 5) is None
    assert not await state.extend("t1", "not-the-holder", 60)
    assert await state.extend("t1", token, 60)
    assert 55_000 < await redis.pttl(f"{settings.redis_prefix}reconcile:lock:t1") <= 60_000
    await state.unlock("t1", token)
    assert await state.lock("t1", 5) is not None


async def test_trash_listings_are_resumable_and_compared_in_redis(
    redis: Redis, settings: Settings
) -> None:
    state = ReconcileState(redis, settings.redis_prefix)
    assert await state.trash("t1") is None and await state.trash_progress("t1") is None
    first = TrashProgress(started=1000)
    await state.begin_trash("t1", first)
    first.done = True
    await state.add_trash_page("t1", [], first)
    assert await state.trash_diff("t1") is None  # nothing to compare with: a baseline
    await state.finish_trash("t1", first)
    assert await state.trash("t1") == set()  # an empty trash, recorded
    assert await state.trash_at("t1") == 1000 and await state.trash_progress("t1") is None

    second = TrashProgress(started=5000)
    await state.begin_trash("t1", second)
    second.cursor, second.listed, second.calls = "https://x/wiki/api/v2/pages?cursor=a", 2, 1
    await state.add_trash_page("t1", ["1:2", "3:1"], second)
    assert await state.trash_progress("t1") == second  # resumed from here
    assert await state.trash_diff("t1") == ({"1:2", "3:1"}, set())
    await state.finish_trash("t1", second)
    assert await state.trash("t1") == {"1:2", "3:1"}

    third = TrashProgress(started=9000)
    await state.begin_trash("t1", third)
    await state.add_trash_page("t1", ["3:1", "4:5"], third)
    assert await state.trash_diff("t1") == ({"4:5"}, {"1:2"})
    await state.abandon_trash("t1", 9500)  # failed: the last completed listing stays
    assert await state.trash("t1") == {"1:2", "3:1"}
    assert await state.trash_at("t1") == 9500 and await state.trash_progress("t1") is None
