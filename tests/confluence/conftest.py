"""Fixtures for the Confluence client: a schema-checked fake site and a recording budget hook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import structlog

from app.budget.hook import Observation, Priority, Reservation
from app.confluence import ConfluenceClient, Site
from tests.confluence.fake import FakeConfluence


@dataclass
class RecordingBudget:
    """A BudgetHook that admits everything and remembers each reserve and settle."""

    reserved: list[tuple[str, int, Priority]] = field(default_factory=list)
    settled: list[tuple[Reservation, Observation]] = field(default_factory=list)

    async def reserve(self, tenant: str, cost: int, priority: Priority) -> Reservation:
        self.reserved.append((tenant, cost, priority))
        return Reservation(
            tenant=tenant, cost=cost, priority=priority, token=str(len(self.reserved))
        )

    async def settle(self, reservation: Reservation, observation: Observation) -> None:
        self.settled.append((reservation, observation))

    @property
    def observations(self) -> list[Observation]:
        return [obs for _, obs in self.settled]


@pytest.fixture
def fake() -> FakeConfluence:
    return FakeConfluence()


@pytest.fixture
def budget() -> RecordingBudget:
    return RecordingBudget()


@pytest.fixture
async def http(fake: FakeConfluence) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fake.transport) as client:
        yield client


def basic_site() -> Site:
    return Site.basic(site_url="https://acme.atlassian.net", email="bot@acme.test", api_token="t0k")


@pytest.fixture
def client(http: httpx.AsyncClient, budget: RecordingBudget) -> ConfluenceClient:
    logger: Any = structlog.get_logger("test")
    return ConfluenceClient(http, basic_site(), budget, event_id="evt-1", logger=logger)
