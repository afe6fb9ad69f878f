"""The real app installed by the Confluence simulator over real sockets: signed install with the
simulator's key server, then webhooks from simulated activity reaching the app's queue."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from app.embedded_redis import free_port
from app.main import create_app
from app.queue import EventQueue
from app.settings import Settings
from simulator.keys import KeyPair
from simulator.main import create_app as create_simulator
from simulator.site import Simulator, build
from tests.conftest import LiveServer

TOKEN = "sim-connect-test-token"


def basic() -> str:
    import base64

    return "Basic " + base64.b64encode(f"admin@example.com:{TOKEN}".encode()).decode()


@pytest.fixture
def stack(settings: Settings, redis: Redis) -> Iterator[tuple[Simulator, str, str, Settings]]:
    keys = (KeyPair.generate("sim-install"), KeyPair.generate("sim-forge"))
    sim_port, app_port = free_port(), free_port()
    sim_url, app_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{app_port}"
    sim = build(api_token=TOKEN, keys=keys, public_url=sim_url, seed=5)
    app_settings = settings.model_copy(
        update={"base_url": app_url, "connect_install_keys_url": f"{sim_url}/_sim/install-keys"}
    )
    app_server = LiveServer(create_app(app_settings), port=app_port)
    sim_server = LiveServer(create_simulator(sim), port=sim_port)
    app_server.start()
    sim_server.start()
    try:
        yield sim, sim_url, app_url, app_settings
    finally:
        sim_server.stop()
        app_server.stop()


async def test_installed_by_the_simulator_and_receiving_its_webhooks(
    stack: tuple[Simulator, str, str, Settings], redis: Redis
) -> None:
    _, sim_url, app_url, app_settings = stack
    auth = {"Authorization": basic()}
    async with httpx.AsyncClient(base_url=sim_url, headers=auth, timeout=10) as c:
        installed = await c.post(
            "/_sim/apps/connect", json={"descriptorUrl": f"{app_url}/atlassian-connect.json"}
        )
        assert installed.status_code == 201, installed.text
        client_key = installed.json()["clientKey"]
        await c.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
        await c.post("/_sim/users", json={"email": "ann@example.com", "displayName": "Ann"})
        page = (
            await c.post(
                "/_sim/act/pages",
                json={"as": "ann@example.com", "spaceKey": "DEV", "title": "Hi", "body": "x"},
            )
        ).json()
        await c.post(
            f"/_sim/act/pages/{page['id']}/edit", json={"as": "ann@example.com", "body": "y"}
        )
        log = (await c.post("/_sim/webhooks/drain", json={})).json()
    connect = [d for d in log if d["kind"] == "connect"]
    assert [(d["event"], d["status"]) for d in connect] == [
        ("page_created", 204),
        ("page_updated", 204),
    ]
    queue = EventQueue(redis, app_settings)
    prefix = f"{app_settings.redis_prefix}event:"
    stored = []
    async for key in redis.scan_iter(match=f"{prefix}*"):
        event = await queue.get(key.decode().removeprefix(prefix))
        if event is not None:
            stored.append((event.type, event.tenant, event.content_id))
    assert sorted(stored) == [
        ("page.created", client_key, page["id"]),
        ("page.updated", client_key, page["id"]),
    ]
