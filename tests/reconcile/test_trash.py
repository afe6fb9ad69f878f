"""The trash listing runs on its own cadence, bounded per run and resumable, and never holds
the CQL sweep's watermark back (QA 11, H3: every completed sweep listed the whole trash, about
one point per trashed page every 5 minutes, and a listing the budget stopped left the sweep
unfinished for ever)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.reconcile_state import ReconcileState
from app.settings import Settings
from tests.reconcile.fakes import START, world
from workers.reconcile_runtime import sweep_due

HOUR = 3600


def _trash(pages: int) -> dict[str, int]:
    return {str(1000 + n): 3 for n in range(pages)}


async def test_the_trash_is_listed_once_an_hour_not_at_every_sweep(
    redis: Redis, settings: Settings
) -> None:
    async with world(
        redis, settings, ["t1"], reconcile_interval_seconds=300,
        reconcile_trash_interval_seconds=HOUR,
    ) as (rt, confluence, clock, _):  # fmt: skip
        site = confluence.sites["t1"]
        site.trash = _trash(600)  # three calls of 250
        for n in range(25):  # two hours of ticks, 5 minutes apart
            clock.now = START + n * 300
            done = await sweep_due(rt)
            assert done["t1"]["complete"], (n, done)
            assert ("trash" in done["t1"]) == (n % 12 == 0), n
    assert site.searches == 25  # a sweep every interval
    assert site.listing_runs() == 3  # at 0, 1 h and 2 h
    assert len(site.listings) == 9  # each 600 pages: 3 calls, about 603 points


async def test_a_listing_the_budget_stops_does_not_hold_the_watermark_and_resumes(
    redis: Redis, settings: Settings
) -> None:
    async with world(redis, settings, ["t1"]) as (rt, confluence, clock, budget):
        site = confluence.sites["t1"]
        site.trash = _trash(1000)  # four calls
        budget.allow = 3  # the search and two pages of the trash, then no points
        done = await sweep_due(rt)
        state: ReconcileState = rt.sweeper.state
        assert done["t1"]["complete"] and done["t1"]["trash"]["yielded"]
        assert await state.watermark("t1") == int(START * 1000)  # the sweep finished
        assert await state.progress("auto", "t1") is None

        budget.allow = None
        clock.now += 60  # the next tick: no sweep due, the listing goes on where it stopped
        done = await sweep_due(rt)
        assert set(done["t1"]) == {"trash"}
        assert done["t1"]["trash"]["complete"] and done["t1"]["trash"]["listed"] == 1000
    assert site.listings == [None, "250", "500", "750"]  # no page listed twice
    assert await state.trash("t1") == {f"{1000 + n}:3" for n in range(1000)}


async def test_one_run_lists_a_bounded_number_of_pages_and_changes_are_found_across_runs(
    redis: Redis, settings: Settings
) -> None:
    async with world(redis, settings, ["t1"]) as (rt, confluence, clock, _):
        rt.sweeper.trash_calls = 5  # 1,250 pages a run
        site = confluence.sites["t1"]
        site.trash = _trash(3000)  # twelve calls
        calls = []
        for _ in range(4):
            done = await sweep_due(rt)
            calls.append(done.get("t1", {}).get("trash", {}).get("calls"))
            clock.now += 60
        assert calls == [5, 5, 2, None]  # the listing ended at the third run
        assert site.listings == [None] + [str(250 * n) for n in range(1, 12)]

        site.trash.pop("1000")
        site.status["1000"] = "current"  # restored
        site.trash.pop("1001")  # purged
        site.trash["9999"] = 1  # trashed
        clock.now = START + 3600
        reports = []
        while not reports or not reports[-1]["complete"]:
            reports.append((await sweep_due(rt))["t1"]["trash"])
            clock.now += 60
            assert len(reports) <= 3
    last = reports[-1]
    assert (last["trashed"], last["restored"], last["deleted"], last["enqueued"]) == (1, 1, 1, 3)


async def test_a_failing_listing_waits_for_its_next_turn_and_the_sweeps_go_on(
    redis: Redis, settings: Settings
) -> None:
    async with world(redis, settings, ["t1"], reconcile_interval_seconds=300) as (
        rt,
        confluence,
        clock,
        _,
    ):
        site = confluence.sites["t1"]
        site.trash, site.fail_trash = _trash(10), True
        done = await sweep_due(rt)
        assert done["t1"]["complete"] and done["t1"]["trash"]["failed"]
        assert await rt.sweeper.state.watermark("t1") == int(START * 1000)
        site.fail_trash = False
        for minutes in (1, 5, 10, 55):  # sweeps every interval; no listing before the hour
            clock.now = START + minutes * 60
            await sweep_due(rt)
        assert site.listings == [None] and site.searches == 4  # at 0, 5, 10 and 55 min
        clock.now = START + 3600
        done = await sweep_due(rt)
        assert done["t1"]["trash"]["complete"] and site.listings == [None, None]


async def test_trash_listings_can_be_turned_off(redis: Redis, settings: Settings) -> None:
    async with world(redis, settings, ["t1"], reconcile_trash_interval_seconds=0) as (
        rt,
        confluence,
        clock,
        _,
    ):
        confluence.sites["t1"].trash = _trash(10)
        assert "trash" not in (await sweep_due(rt))["t1"]
        clock.now += 3 * HOUR
        assert "trash" not in (await sweep_due(rt))["t1"]
    assert confluence.sites["t1"].listings == []
