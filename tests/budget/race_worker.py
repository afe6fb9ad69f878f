"""One process of the multi-process race test: hammer the budget, print what was admitted.

``python -m tests.budget.race_worker <redis url> <prefix> <seed> <coroutines>`` prints one JSON
object: points admitted per hour (from the reservation tokens) and the denial reasons seen.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter

from app import redis as redis_conn
from app.budget.hook import BudgetExhausted, Observation, Priority
from app.budget.model import BudgetConfig
from app.budget.redis_budget import RedisBudget
from app.settings import Settings

QUOTA = 3000


async def main(url: str, prefix: str, seed: int, coroutines: int) -> None:
    settings = Settings(redis_url=url, redis_prefix=prefix, _env_file=None)
    client = redis_conn.connect(url)
    config = BudgetConfig(
        points_per_hour=QUOTA,
        pacing=False,
        burst_per_second=0,
        reserve_fraction=0,
        max_wait_seconds=0,
    )
    budget = RedisBudget(client, settings, config=config)
    rng = random.Random(seed)
    admitted: Counter[str] = Counter()
    reasons: Counter[str] = Counter()

    async def hammer(n: int) -> None:
        tenant = f"t{n % 5}"
        while True:
            cost = rng.randint(1, 30)
            try:
                r = await budget.reserve(tenant, cost, Priority(n % 3))
            except BudgetExhausted as exc:
                reasons[exc.reason] += 1
                if exc.reason == "quota":
                    return
                continue
            admitted[r.token.partition(":")[0]] += cost
            await asyncio.sleep(0)
            await budget.settle(r, Observation(status=200))

    await asyncio.gather(*(hammer(n) for n in range(coroutines)))
    await client.aclose()
    print(json.dumps({"admitted": admitted, "reasons": reasons}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
