"""A Confluence simulator and the reactor app on real sockets, the app installed on the site.

The simulator delivers webhooks to the app (which verifies and enqueues them as in
production); tests inject delivery faults through the simulator's admin API, act as users,
then sweep and drain the queue with a recording dispatcher.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.embedded_redis import free_port
from app.main import create_app
from app.settings import Settings
from simulator.keys import KeyPair
from simulator.main import create_app as create_sim
from simulator.site import Simulator, build
from tests.conftest import LiveServer
from workers.dispatch import JobContext

SIM_TOKEN = "reconcile-sim-token"
USER = "ann@example.com"
FORGE_APP = "ari:cloud:ecosystem::app/5e0c1f4a-7a53-4d7e-9a55-0d6f3c0e2b10"
# Forge tokens must name an https API base; requests to it are sent to the simulator's socket.
GATEWAY = "https://api.sim.test"


class GatewayTransport(httpx.AsyncBaseTransport):
    """Sends requests for :data:`GATEWAY` to the simulator (what DNS does in production)."""

    def __init__(self, sim_url: str) -> None:
        self.target = httpx.URL(sim_url)
        self.inner = httpx.AsyncHTTPTransport()
        self.forwarded: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == httpx.URL(GATEWAY).host:
            self.forwarded.append(f"{request.headers['authorization'][:7]}{request.url.path}")
            request.url = request.url.copy_with(
                scheme=self.target.scheme, host=self.target.host, port=self.target.port
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Recorder:
    """A dispatcher that records every event the job layer runs."""

    events: list[Event] = field(default_factory=list)

    async def __call__(self, event: Event, job: JobContext) -> None:
        self.events.append(event)

    def versions(self) -> Counter[tuple[str, int | None]]:
        return Counter((e.content_id, e.version) for e in self.events)


@dataclass
class Stack:
    sim: Simulator
    sim_url: str
    app_url: str
    settings: Settings
    admin: httpx.AsyncClient
    tenant: str = ""
    space_id: str = ""

    async def act(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.admin.post(f"/_sim{path}", json=body)
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()
        return data

    async def create(self, title: str, kind: str = "page") -> str:
        made = await self.act(
            "/act/pages",
            {"as": USER, "spaceKey": "DEV", "title": title, "type": kind, "body": "v1"},
        )
        return str(made["id"])

    async def edit(self, content_id: str, text: str) -> None:
        await self.act(f"/act/pages/{content_id}/edit", {"as": USER, "body": text})

    async def faults(self, **values: Any) -> None:
        response = await self.admin.put("/_sim/faults", json=values)
        assert response.status_code == 200, response.text

    async def drain(self) -> list[dict[str, Any]]:
        response = await self.admin.post("/_sim/webhooks/drain", json={"timeout": 10})
        assert response.status_code == 201, response.text
        log: list[dict[str, Any]] = response.json()
        return log

    def expected_versions(self) -> Counter[tuple[str, int | None]]:
        """Every version of every current page and blog post on the site, once each."""
        return Counter(
            (item.id, rev.number)
            for item in self.sim.store.contents.values()
            if item.type in ("page", "blogpost") and item.status == "current"
            for rev in item.revisions
        )


@pytest.fixture(scope="session")
def sim_keys() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate("sim-install"), KeyPair.generate("sim-forge")


@pytest.fixture
async def stack(
    settings: Settings, redis: Redis, sim_keys: tuple[KeyPair, KeyPair]
) -> AsyncIterator[Stack]:
    sim_port, app_port = free_port(), free_port()
    sim_url, app_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{app_port}"
    sim = build(
        api_token=SIM_TOKEN, keys=sim_keys, public_url=sim_url, gateway_url=GATEWAY, seed=11
    )
    app_settings = settings.model_copy(
        update={
            "base_url": app_url,
            "connect_install_keys_url": f"{sim_url}/_sim/install-keys",
            "forge_app_id": FORGE_APP,
            "forge_jwks_url": f"{sim_url}/_sim/forge/jwks.json",
            "reconcile_overlap_seconds": 60.0,
        }
    )
    sim_server = LiveServer(create_sim(sim), port=sim_port)
    app_server = LiveServer(create_app(app_settings), port=app_port)
    sim_server.start()
    app_server.start()
    auth = httpx.BasicAuth("admin@example.com", SIM_TOKEN)
    try:
        async with httpx.AsyncClient(base_url=sim_url, auth=auth, timeout=10) as admin:
            stack = Stack(sim, sim_url, app_url, app_settings, admin)
            installed = await stack.act(
                "/apps/connect", {"descriptorUrl": f"{app_url}/atlassian-connect.json"}
            )
            stack.tenant = str(installed["clientKey"])
            space = await stack.act("/spaces", {"key": "DEV", "name": "Development"})
            stack.space_id = str(space["id"])
            await stack.act("/users", {"email": USER, "displayName": "Ann"})
            yield stack
    finally:
        app_server.stop()
        sim_server.stop()


@pytest.fixture
def drain_queue(burst_worker: Callable[..., Worker]) -> Callable[[Recorder], Any]:
    """``await drain_queue(recorder)`` runs every queued event through ``recorder``."""

    async def run(recorder: Recorder) -> None:
        await burst_worker(dispatch=recorder).main()

    return run
