"""Client wiring: the pooled HTTP client, timeouts, and log lines bound to the event."""

from __future__ import annotations

import httpx
import structlog
from structlog.testing import capture_logs

from app.budget.hook import Unmetered
from app.confluence import ConfluenceClient, Site, new_http_client
from tests.confluence.fake import FakeConfluence


async def test_pooled_client_and_per_client_timeout() -> None:
    fake = FakeConfluence()
    space = fake.add_space("DEV")
    http = new_http_client(timeout=httpx.Timeout(7.0, connect=2.0), transport=fake.transport)
    async with http:
        site = Site.basic(site_url="https://acme.atlassian.net", email="e", api_token="t")
        default = ConfluenceClient(http, site, Unmetered())
        await default.get_space(space["id"])
        tight = ConfluenceClient(http, site, Unmetered(), timeout=httpx.Timeout(1.5))
        await tight.get_space(space["id"])
    first, second = (r.extensions["timeout"] for r in fake.requests)
    assert first == {"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}
    assert second == {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}
    assert fake.requests[0].headers["User-Agent"] == "confluence-reactor"


async def test_log_lines_carry_the_event_and_no_secret() -> None:
    fake = FakeConfluence()
    space = fake.add_space("DEV")

    async def token() -> str:
        return "very-secret-system-token"

    site = Site.forge(tenant="forge:c1", api_base_url="https://acme.atlassian.net", token=token)
    async with httpx.AsyncClient(transport=fake.transport) as http:
        logger = structlog.get_logger("test").bind(job="j1")
        client = ConfluenceClient(http, site, Unmetered(), event_id="evt-9", logger=logger)
        with capture_logs() as logs:
            await client.get_space(space["id"])
            await client.create_page(space["id"], "T", "<p/>")
            fake.failures.append(httpx.Response(404, json={"errors": []}))
            try:
                await client.get_space("404")
            except Exception as exc:
                assert "very-secret" not in str(exc)
    assert [(e["method"], e["status"], e["log_level"]) for e in logs] == [
        ("GET", 200, "debug"),
        ("POST", 200, "info"),
        ("GET", 404, "warning"),
    ]
    assert all(e["event_id"] == "evt-9" and e["tenant"] == "forge:c1" for e in logs)
    assert "very-secret" not in repr(logs)
