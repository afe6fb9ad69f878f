"""Races: many coroutines and several processes reserving at once never overspend."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from app import redis as redis_conn
from app.budget.hook import BudgetExhausted, Observation, Priority
from app.settings import Settings
from tests.budget import race_worker
from tests.budget.helpers import FakeClock, budget

ROOT = Path(__file__).resolve().parents[2]


async def test_coroutines_on_many_connections_never_overspend(
    redis: Redis, settings: Settings
) -> None:
    assert settings.redis_url is not None
    clients = [redis_conn.connect(settings.redis_url) for _ in range(8)]
    clock = FakeClock()
    budgets = [budget(c, settings, clock, points_per_hour=2000) for c in clients]
    rng = random.Random(7)
    admitted: list[int] = []
    actual: list[int] = []

    async def hammer(n: int) -> None:
        b = budgets[n % len(budgets)]
        while True:
            cost = rng.randint(1, 25)
            try:
                r = await b.reserve(f"t{n % 7}", cost, Priority.INTERACTIVE)
            except BudgetExhausted as exc:
                assert exc.reason in ("quota", "fair-share")
                if exc.reason == "quota":
                    return
                continue
            admitted.append(cost)
            await asyncio.sleep(0)
            # responses often return fewer objects than the list limit we paid for
            spent = rng.randint(1, cost)
            actual.append(spent)
            await b.settle(r, Observation(status=200, actual_cost=spent))

    try:
        await asyncio.gather(*(hammer(n) for n in range(300)))
        snap = await budgets[0].snapshot()
    finally:
        for c in clients:
            await c.aclose()
    assert snap.reserved == 0
    assert snap.charged == sum(actual) <= 2000
    assert snap.charged > 2000 - 25, "the quota is used, not only respected"
    assert sum(admitted) > 2000, "settling at the actual cost frees points for more calls"
    assert sum(v.spent for v in snap.tenants.values()) == snap.charged


async def test_several_processes_share_one_quota(redis: Redis, settings: Settings) -> None:
    assert settings.redis_url is not None
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.budget.race_worker",
                settings.redis_url,
                settings.redis_prefix,
                str(seed),
                "40",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    admitted: Counter[str] = Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        admitted.update(json.loads(out)["admitted"])
    # Redis TIME is the clock; group by the hour each reservation was made in
    assert admitted, "no process got any budget"
    for hour, points in admitted.items():
        charged = await redis.hget(f"{settings.redis_prefix}budget:h:{hour}", "charged")  # type: ignore[misc]
        assert int(charged) == points <= race_worker.QUOTA
    assert max(admitted.values()) > race_worker.QUOTA - 30


async def test_a_429_storm_pauses_every_process(redis: Redis, settings: Settings) -> None:
    """Processes already waiting for budget all hold off until Retry-After has passed."""
    assert settings.redis_url is not None
    b = budget(redis, settings, None, points_per_hour=100_000)
    storm = [await b.reserve("acme", 1, Priority.INTERACTIVE) for _ in range(20)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.budget.pause_worker",
                settings.redis_url,
                settings.redis_prefix,
                "3",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:  # every process is connected and about to ask for budget
        assert proc.stdout is not None
        assert await asyncio.to_thread(proc.stdout.readline) == "ready\n"
    # the storm: 20 calls come back 429 at once, Retry-After 2-3 s
    await asyncio.gather(
        *(
            b.settle(r, Observation(status=429, retry_after=2 + i / 20, reason="burst"))
            for i, r in enumerate(storm)
        )
    )
    stormed_at = await b.now()
    paused_until = (await b.snapshot()).paused_until
    assert paused_until is not None and paused_until > stormed_at + 1
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    admitted = [t for r in results for t in r["admitted"]]
    assert len(admitted) == 9
    # before the storm a process may have got in; between the storm and the end of the
    # longest Retry-After, none did
    assert not [t for t in admitted if stormed_at <= t < paused_until]
    assert sum(r["denied"].count("paused") for r in results) >= 1, "nobody was held"
    assert (await b.snapshot()).n429 == 20
