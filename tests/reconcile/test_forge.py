"""A site known only through Forge is swept as ``forge:<cloudId>`` with the app system token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from app.confluence.client import new_http_client
from tests.reconcile.conftest import FORGE_APP, GatewayTransport, Recorder, Stack
from workers.reconcile_runtime import runtime


async def test_forge_installation_is_swept_through_the_gateway(
    stack: Stack, redis: Redis, drain_queue: Callable[[Recorder], Any]
) -> None:
    forge = await stack.act(
        "/apps/forge", {"appId": FORGE_APP, "url": f"{stack.app_url}/forge/events"}
    )
    # one delivered event registers the installation and its system token
    first = await stack.create("Seen through Forge")
    await stack.drain()
    await stack.faults(webhook_drop=1.0)
    page = await stack.create("Missed")
    await stack.edit(page, "again")
    await stack.drain()

    tenant = f"forge:{stack.sim.store.cloud_id}"
    gateway = GatewayTransport(stack.sim_url)
    http = new_http_client(transport=gateway)
    try:
        async with runtime(redis, stack.settings, http=http) as rt:
            targets = {t.tenant: t for t in await rt.targets()}
            assert set(targets) == {stack.tenant, tenant}  # Connect and Forge-only, separately
            report = await rt.sweeper.run(targets[tenant])
    finally:
        await http.aclose()
    assert report.complete, report
    cloud = stack.sim.store.cloud_id
    assert f"Bearer /ex/confluence/{cloud}/wiki/rest/api/search" in gateway.forwarded

    recorder = Recorder()
    await drain_queue(recorder)
    forge_events = [e for e in recorder.events if e.tenant == tenant]
    versions = {(e.content_id, e.version): e.source for e in forge_events}
    assert versions[(first, 1)] == "forge"
    assert versions[(page, 1)] == "reconcile" and versions[(page, 2)] == "reconcile"
    assert len(forge_events) == len(versions)  # each once
    assert forge["installationId"]
