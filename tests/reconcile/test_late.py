"""A search answered later than its query's lower bound allows never ends a sweep: the rest is
read with a query reaching further ahead, and a run whose searches keep coming too late stops
unfinished rather than report complete."""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings
from tests.reconcile.fakes import world
from workers.reconcile import LATE_ENDS


async def test_searches_that_keep_answering_too_late_leave_the_sweep_unfinished(
    redis: Redis, settings: Settings
) -> None:
    async with world(redis, settings, ["t1"]) as (rt, confluence, clock, _):
        waits = iter([200.0 * 10**n for n in range(10)])  # each call waits ten times longer

        async def slow(tenant: str) -> None:
            clock.now += next(waits)

        confluence.hook = slow
        (target,) = await rt.targets()
        report = await rt.sweeper.run(target)
        assert not report.complete
        assert report.yielded == "search answered too late to cover the window"
        assert confluence.sites["t1"].searches == LATE_ENDS + 1
        assert await rt.sweeper.state.watermark("t1") is None  # the watermark did not move
        assert await rt.sweeper.state.progress("auto", "t1") is not None

        # calls that wait, but as long each time: the query built again reaches far enough
        confluence.hook = None
        waited = 0

        async def steady(tenant: str) -> None:
            nonlocal waited
            waited += 1
            clock.now += 400.0

        confluence.hook = steady
        again = await rt.sweeper.run(target)
        assert again.complete and waited == 2  # one late end, then one in time
        assert await rt.sweeper.state.watermark("t1") is not None
