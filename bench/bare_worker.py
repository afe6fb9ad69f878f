"""Yardstick of bench/e2e.py: a bare arq worker making the same Confluence call per job.

``python -m bench.bare_worker`` with ``BARE_REDIS_URL``, ``BARE_QUEUE``, ``BARE_CONCURRENCY``,
``BARE_SITE`` (the tenant's base URL), ``BARE_ISSUER`` and ``BARE_SECRET``. Each job
``post(page_id, body)`` POSTs one footer comment signed with a Connect JWT, as the stamp
reaction does, with none of our machinery: no event record, order, budget, effect ledger.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
from arq.connections import RedisSettings
from arq.worker import Worker, func

from app.atlassian.connect_jwt import encode_connect_token
from workers.main import new_event_loop

PATH = "/api/v2/footer-comments"


async def startup(ctx: dict[str, Any]) -> None:
    ctx["http"] = httpx.AsyncClient(timeout=30)


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].aclose()


async def post(ctx: dict[str, Any], page_id: str, body: str) -> None:
    site = os.environ["BARE_SITE"]
    token = encode_connect_token(
        issuer=os.environ["BARE_ISSUER"],
        secret=os.environ["BARE_SECRET"],
        method="POST",
        url=site + PATH,
        base_url=site,
    )
    answer = await ctx["http"].post(
        site + PATH,
        json={"pageId": page_id, "body": {"representation": "storage", "value": body}},
        headers={"Authorization": f"JWT {token}"},
    )
    answer.raise_for_status()


def main() -> None:
    # the same event loop as our worker (workers.main.new_event_loop), so only the machinery differs
    asyncio.set_event_loop(new_event_loop())
    Worker(
        functions=[func(post, name="post")],
        queue_name=os.environ["BARE_QUEUE"],
        redis_settings=RedisSettings.from_dsn(os.environ["BARE_REDIS_URL"]),
        max_jobs=int(os.environ["BARE_CONCURRENCY"]),
        poll_delay=0.05,
        on_startup=startup,
        on_shutdown=shutdown,
        keep_result=0,
    ).run()


if __name__ == "__main__":
    main()
