"""One process of the 429-storm test: wait for budget like a worker would, print when it got it.

``python -m tests.budget.pause_worker <redis url> <prefix> <calls>`` prints ``ready``, waits for
a line on stdin, then reserves ``calls`` times, sleeping until each ``BudgetExhausted.retry_at``;
prints the Redis times of its admissions.
"""

from __future__ import annotations

import asyncio
import json
import sys

from app import redis as redis_conn
from app.budget.hook import BudgetExhausted, Priority
from app.budget.model import BudgetConfig
from app.budget.redis_budget import RedisBudget
from app.settings import Settings


async def main(url: str, prefix: str, calls: int) -> None:
    client = redis_conn.connect(url)
    settings = Settings(redis_url=url, redis_prefix=prefix, _env_file=None)
    config = BudgetConfig(
        points_per_hour=100_000, pacing=False, burst_per_second=0, max_wait_seconds=0
    )
    budget = RedisBudget(client, settings, config=config)
    admitted: list[float] = []
    denied: list[str] = []
    # Tell the test we are connected, then wait for its "go" so the storm lands while we wait.
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    while len(admitted) < calls:
        try:
            await budget.reserve("acme", 1, Priority.INTERACTIVE)
        except BudgetExhausted as exc:
            denied.append(exc.reason)
            await asyncio.sleep(max(0.0, exc.delay))
            continue
        admitted.append(await budget.now())
    await client.aclose()
    print(json.dumps({"admitted": admitted, "denied": denied}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
