"""End to end over real sockets: signed install, Connect webhooks, Forge events, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.embedded_redis import free_port
from simulator.main import create_app
from simulator.site import Simulator, build
from tests.conftest import LiveServer
from tests.simulator.conftest import TOKEN, basic
from tests.simulator.fakeapp import FORGE_APP, FakeApp


@pytest.fixture
def stack(keys: Any) -> Iterator[tuple[Simulator, FakeApp, str]]:
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    sim = build(
        api_token=TOKEN, keys=keys, public_url=sim_url, gateway_url="https://api.sim.test", seed=3
    )
    sim.clock.set_scale(600)  # Forge's 60 s retry delay passes in 0.1 s
    fake = FakeApp(sim_url)
    app_server = LiveServer(fake.app())
    fake.base_url = app_server.url
    sim_server = LiveServer(create_app(sim), port=port)
    app_server.start()
    sim_server.start()
    try:
        yield sim, fake, sim_url
    finally:
        sim_server.stop()
        app_server.stop()


async def _setup(c: httpx.AsyncClient, fake: FakeApp) -> dict[str, Any]:
    installed = await c.post(
        "/_sim/apps/connect", json={"descriptorUrl": f"{fake.base_url}/atlassian-connect.json"}
    )
    assert installed.status_code == 201, installed.text
    space = (await c.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})).json()
    user = (
        await c.post("/_sim/users", json={"email": "ann@example.com", "displayName": "Ann"})
    ).json()
    return {"app": installed.json(), "space": space, "user": user}


async def test_signed_install_and_webhooks(stack: tuple[Simulator, FakeApp, str]) -> None:
    sim, fake, url = stack
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic()}, timeout=10) as c:
        ctx = await _setup(c, fake)
        (install,) = fake.installs
        assert install["eventType"] == "installed" and install["baseUrl"] == f"{url}/wiki"
        assert install["key"] == "confluence-reactor" and install["productType"] == "confluence"
        page = (
            await c.post(
                "/_sim/act/pages",
                json={
                    "as": "ann@example.com",
                    "spaceKey": "DEV",
                    "title": "Hello",
                    "body": "first",
                },
            )
        ).json()
        await c.post(
            f"/_sim/act/pages/{page['id']}/edit", json={"as": "ann@example.com", "body": "second"}
        )
        await c.post(
            "/_sim/act/comments", json={"as": "ann@example.com", "pageId": page["id"], "body": "hi"}
        )
        await c.post(
            "/_sim/act/labels",
            json={"as": "ann@example.com", "contentId": page["id"], "name": "Go"},
        )
        await c.post("/_sim/webhooks/drain", json={})
    events = [e for e, _ in fake.webhooks]
    assert events == ["page_created", "page_updated", "comment_created", "label_added"]
    assert fake.rejected == []
    created = fake.webhooks[0][1]
    assert created["page"]["idAsString"] == page["id"] and created["page"]["version"] == 1
    assert created["userAccountId"] == ctx["user"]["accountId"]
    assert created["accountType"] == "customer"
    assert fake.webhooks[1][1]["updateTrigger"] == "edit_page"
    comment = fake.webhooks[2][1]["comment"]
    assert comment["parent"]["idAsString"] == page["id"]
    assert sim.counters.webhooks["delivered"] == 4


async def test_the_apps_own_edits_are_delivered_with_its_account(
    stack: tuple[Simulator, FakeApp, str],
) -> None:
    _, fake, url = stack
    from app.atlassian.connect_jwt import encode_connect_token

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic()}, timeout=10) as c:
        ctx = await _setup(c, fake)
        client_key = ctx["app"]["clientKey"]
        secret = fake.secrets[client_key]
        path = "/wiki/api/v2/pages"
        token = encode_connect_token(
            issuer="confluence-reactor",
            secret=secret,
            method="POST",
            url=url + path,
            base_url=url + "/wiki",
        )
        body = {
            "spaceId": ctx["space"]["id"],
            "title": "Bot page",
            "body": {"representation": "storage", "value": "x"},
        }
        made = await c.post(path, json=body, headers={"Authorization": f"JWT {token}"})
        assert made.status_code == 200
        await c.post("/_sim/webhooks/drain", json={})
    ((event, payload),) = fake.webhooks
    assert event == "page_created"
    assert payload["userAccountId"] == ctx["app"]["accountId"] and payload["accountType"] == "app"


async def test_forge_events_with_fit_and_retries(stack: tuple[Simulator, FakeApp, str]) -> None:
    sim, fake, url = stack
    fake.forge_failures = 2
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic()}, timeout=10) as c:
        await c.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
        forge = await c.post(
            "/_sim/apps/forge",
            json={
                "appId": FORGE_APP,
                "url": f"{fake.base_url}/forge/events",
                "events": ["avi:confluence:created:page"],
            },
        )
        assert forge.status_code == 201
        await c.post(
            "/_sim/act/pages", json={"as": "admin@example.com", "spaceKey": "DEV", "title": "F"}
        )
        await c.post("/_sim/webhooks/drain", json={"timeout": 10})
        assert fake.rejected == []
        (event,) = fake.forge
        assert event["eventType"] == "avi:confluence:created:page"
        assert event["retryContext"] == {
            "retryCount": 2,
            "retryReason": "INVALID_REMOTE_INVOCATION_ERROR",
            "retryData": None,
        }
        assert event["content"]["title"] == "F" and event["selfGenerated"] is False
        assert sim.counters.webhooks["retried"] == 2
        # the system token works against the gateway as the app
        token = fake.system_tokens[-1]
        gateway = f"/ex/confluence/{sim.store.cloud_id}/wiki/api/v2/pages"
        listed = await c.get(gateway, headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200 and "x-ratelimit-remaining" in listed.headers


async def test_delivery_faults(stack: tuple[Simulator, FakeApp, str]) -> None:
    _, fake, url = stack
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic()}, timeout=10) as c:
        await _setup(c, fake)
        await c.put("/_sim/faults", json={"webhook_drop": 1.0})
        await c.post(
            "/_sim/act/pages", json={"as": "admin@example.com", "spaceKey": "DEV", "title": "Lost"}
        )
        await c.put("/_sim/faults", json={"webhook_drop": 0.0, "webhook_duplicate": 1.0})
        await c.post(
            "/_sim/act/pages", json={"as": "admin@example.com", "spaceKey": "DEV", "title": "Twice"}
        )
        await c.post("/_sim/webhooks/drain", json={})
        await c.put("/_sim/faults", json={"webhook_duplicate": 0.0, "webhook_reorder": True})
        await c.post(
            "/_sim/act/pages", json={"as": "admin@example.com", "spaceKey": "DEV", "title": "A"}
        )
        await c.post(
            "/_sim/act/pages", json={"as": "admin@example.com", "spaceKey": "DEV", "title": "B"}
        )
        await c.post("/_sim/webhooks/drain", json={})
        counters = (await c.get("/_sim/counters")).json()["webhooks"]
    titles = [body["page"]["title"] for _, body in fake.webhooks]
    assert titles == ["Twice", "Twice", "B", "A"]
    assert counters["dropped"] == 1 and counters["duplicated"] == 1


async def test_uninstall_sends_signed_callback(stack: tuple[Simulator, FakeApp, str]) -> None:
    _, fake, url = stack
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic()}, timeout=10) as c:
        await _setup(c, fake)
        assert (await c.delete("/_sim/apps/connect/confluence-reactor")).status_code == 204
        assert [i["eventType"] for i in fake.installs] == ["installed", "uninstalled"]
        assert (await c.get("/_sim/apps")).json()["connect"] == []
        await asyncio.sleep(0)


async def test_a_reinstall_after_an_uninstall_keeps_the_client_key(
    stack: tuple[Simulator, FakeApp, str],
) -> None:
    """One clientKey per app and site, as Confluence keeps it: the app finds its tenant again."""
    sim, fake, url = stack
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic()}, timeout=10) as c:
        await _setup(c, fake)
        assert (await c.delete("/_sim/apps/connect/confluence-reactor")).status_code == 204
        descriptor = {"descriptorUrl": f"{fake.base_url}/atlassian-connect.json"}
        assert (await c.post("/_sim/apps/connect", json=descriptor)).status_code == 201
    first, gone, again = fake.installs
    assert [first["eventType"], gone["eventType"], again["eventType"]] == [
        "installed",
        "uninstalled",
        "installed",
    ]
    assert first["clientKey"] == gone["clientKey"] == again["clientKey"]
    assert again["sharedSecret"] != first["sharedSecret"]  # a new secret, as on every install
    assert sim.store.departed_apps == {}
