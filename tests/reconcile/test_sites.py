"""Sweeps of several sites in one tick: what one site's sweep learns stays with that site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.crypto import SecretBox
from app.embedded_redis import free_port
from app.installations import InstallationStore
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from simulator.keys import KeyPair
from simulator.main import create_app as create_sim
from simulator.site import build
from tests.conftest import LiveServer
from tests.forge.test_installations import invocation
from tests.reconcile.conftest import SIM_TOKEN, USER, Recorder, Stack
from workers import reconcile
from workers.reconcile_runtime import runtime, sweep_due


@pytest.mark.parametrize("kept", [reconcile.MAX_SPACE_KEYS, 1])
async def test_sites_numbering_spaces_alike_keep_their_own_space_keys(
    stack: Stack,
    redis: Redis,
    sim_keys: tuple[KeyPair, KeyPair],
    drain_queue: Callable[[Recorder], Any],
    monkeypatch: pytest.MonkeyPatch,
    kept: int,
) -> None:
    """Each site numbers its spaces on its own: space 65538 is DEV on one site and OPS on
    another. One tick sweeps both; every swept event carries its own site's space key, also
    when the sweeper may keep only one key and forgets between the sites."""
    monkeypatch.setattr(reconcile, "MAX_SPACE_KEYS", kept)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    other = build(api_token=SIM_TOKEN, keys=sim_keys, public_url=url, seed=12)
    server = LiveServer(create_sim(other), port=port)
    server.start()
    auth = httpx.BasicAuth("admin@example.com", SIM_TOKEN)
    try:
        async with httpx.AsyncClient(base_url=url, auth=auth, timeout=10) as admin:
            installed = await admin.post(
                "/_sim/apps/connect",
                json={"descriptorUrl": f"{stack.app_url}/atlassian-connect.json"},
            )
            other_tenant = str(installed.json()["clientKey"])
            space = (await admin.post("/_sim/spaces", json={"key": "OPS", "name": "Ops"})).json()
            assert str(space["id"]) == stack.space_id  # the case that matters: same id
            await admin.post("/_sim/users", json={"email": USER, "displayName": "Ann"})
            for site in (admin, stack.admin):  # only the sweep sees the changes
                await site.put("/_sim/faults", json={"webhook_drop": 1.0})
            made = await admin.post(
                "/_sim/act/pages", json={"as": USER, "spaceKey": "OPS", "title": "Runbook"}
            )
            assert made.status_code in (200, 201), made.text
            await admin.post("/_sim/webhooks/drain", json={"timeout": 10})
        await stack.create("Design notes")
        await stack.drain()
        async with runtime(redis, stack.settings) as rt:
            reports = await sweep_due(rt)
        assert set(reports) >= {stack.tenant, other_tenant}
        recorder = Recorder()
        await drain_queue(recorder)
        keys = {(e.tenant, e.space_key) for e in recorder.events if e.source == "reconcile"}
        assert keys == {(stack.tenant, "DEV"), (other_tenant, "OPS")}
    finally:
        server.stop()


async def test_a_site_whose_connect_install_went_is_swept_under_its_clientkey(
    redis: Redis, settings: Settings
) -> None:
    """The linked Forge installation serves it alone, under the same tenant id (its watermark
    and seen versions carry on); a disabled site is not swept, and no site is listed twice."""
    tenants = TenantStore(redis, settings)
    installations = InstallationStore(redis, SecretBox(settings.secret_keys), settings.redis_prefix)
    linked = Tenant("ck-linked", "s" * 40, "https://acme.atlassian.net/wiki")
    await tenants.upsert(linked, issued_at=1000)
    await installations.register(invocation(), "ck-linked")
    async with runtime(redis, settings) as rt:
        assert [t.tenant for t in await rt.targets()] == ["ck-linked"]
        await tenants.mark_status("ck-linked", "disabled", issued_at=1010)
        assert await rt.targets() == []
        await tenants.mark_status("ck-linked", "uninstalled", issued_at=1020)
        assert [t.tenant for t in await rt.targets()] == ["ck-linked"]
