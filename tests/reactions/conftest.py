"""Fixtures of the reaction tests: a fake Confluence and a job context on the real test Redis."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.budget.hook import Unmetered
from app.confluence.client import ConfluenceClient
from app.confluence.site import Site
from app.settings import Settings
from simulator.keys import KeyPair
from simulator.main import create_app
from simulator.site import build
from tests.reactions.fake import APP, FakeConfluence
from workers.client_ops import ClientOps
from workers.dispatch import JobContext
from workers.ops import Content
from workers.reactor import Reactor, ReactorOptions
from workers.routing import Router

PAGE_BODY = "<h2>Context</h2><p>We cache.</p>"


@pytest.fixture
def fake() -> FakeConfluence:
    confluence = FakeConfluence()
    confluence.add(
        Content(
            id="1001",
            kind="page",
            title="RFC: caching",
            body=PAGE_BODY,
            version=2,
            author_id="user-1",
            parent_id="100",
            space_id="77",
        )
    )
    return confluence


@pytest.fixture
def job(settings: Settings, redis: Redis) -> Callable[[Event], JobContext]:
    def make(event: Event) -> JobContext:
        log = structlog.get_logger("test").bind(event_id=event.id)
        return JobContext(event.id, 1, settings, redis, log)

    return make


@pytest.fixture
def reactor(fake: FakeConfluence) -> Callable[..., Reactor]:
    def make(router: Router, **options: object) -> Reactor:
        async def client_for(event: Event, job: JobContext) -> FakeConfluence:
            return fake

        opts = ReactorOptions(app_accounts=frozenset({APP}), **options)  # type: ignore[arg-type]
        return Reactor(router, client_for, opts)

    return make


@asynccontextmanager
async def in_process_simulator(
    token: str, keys: tuple[KeyPair, KeyPair], base: str = "https://site.test"
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Site]]:
    """The simulator behind httpx in this process: a client signed in as its admin, a bare
    client for the app's Confluence client, and the site as the app reaches it."""
    sim = build(api_token=token, keys=keys, public_url=base, seed=1)
    auth = "Basic " + base64.b64encode(f"admin@example.com:{token}".encode()).decode()
    transport = httpx.ASGITransport(app=create_app(sim))
    async with (
        httpx.AsyncClient(
            transport=transport, base_url=base, headers={"Authorization": auth}
        ) as admin,
        httpx.AsyncClient(transport=transport) as http,
    ):
        site = Site.basic(site_url=f"{base}/wiki", email="admin@example.com", api_token=token)
        yield admin, http, site


# The simulator in this process, reached through the real Confluence client (`sim.reactor`)
SIM_TOKEN = "rerun-token"
BASE = "https://site.test"
ANN = "ann@example.com"


@dataclass
class Sim:
    admin: httpx.AsyncClient
    http: httpx.AsyncClient
    site: Site
    space_id: str

    def reactor(self, router: Router) -> Reactor:
        async def client_for(event: Event, job: JobContext) -> ClientOps:
            return ClientOps(ConfluenceClient(self.http, self.site, Unmetered(), event_id=event.id))

        return Reactor(router, client_for, ReactorOptions())

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        made = await self.admin.post(path, json=body)
        assert made.status_code in (200, 201), made.text
        data: dict[str, Any] = made.json()
        return data

    async def results(self, path: str) -> list[dict[str, Any]]:
        found = await self.admin.get(path, params={"body-format": "storage"})
        assert found.status_code == 200, found.text
        results: list[dict[str, Any]] = found.json()["results"]
        return results


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    keys = (KeyPair.generate("install"), KeyPair.generate("forge"))
    async with in_process_simulator(SIM_TOKEN, keys, BASE) as (admin, http, site):
        bare = Sim(admin, http, site, "")
        space = await bare.post("/_sim/spaces", {"key": "DEV", "name": "Dev"})
        await bare.post("/_sim/users", {"email": ANN, "displayName": "Ann"})
        yield Sim(admin, http, site, space["id"])
