"""Our own Confluence client, written against Atlassian's spec, driving the simulator."""

from __future__ import annotations

from typing import Any

import httpx

from app.budget.hook import Unmetered
from app.confluence.client import ConfluenceClient, new_http_client
from app.confluence.site import Site
from simulator import edits
from simulator.demo import actor_ctx
from simulator.main import create_app
from simulator.site import Simulator
from simulator.store import ConnectInstall
from tests.simulator.conftest import basic

SITE = "https://site.test/wiki"


async def test_connect_client_round_trip_with_a_concurrent_edit(sim: Simulator) -> None:
    app_user = sim.store.add_user("app@connect", "Reactor", api_token="", account_type="app")
    sim.store.connect_apps["confluence-reactor"] = ConnectInstall(
        key="confluence-reactor",
        base_url="https://app.test",
        client_key="ck",
        shared_secret="s" * 40,
        account_id=app_user.account_id,
        scopes=["READ", "WRITE"],
    )
    person = sim.store.add_user("ann@example.com", "Ann")
    asgi = create_app(sim)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=asgi),
        base_url="https://site.test",
        headers={"Authorization": basic()},
    ) as admin:
        space = (await admin.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})).json()
    http = new_http_client(transport=httpx.ASGITransport(app=asgi))
    site = Site.connect(
        tenant="ck", base_url=SITE, app_key="confluence-reactor", shared_secret="s" * 40
    )
    client = ConfluenceClient(http, site, Unmetered())
    try:
        page = await client.create_page(space["id"], "Interop", "<p>one</p>")
        assert page.id in sim.store.contents
        for i in range(30):
            await client.create_page(space["id"], f"Bulk {i:02d}", "<p>x</p>")
        titles = [p.title async for p in client.iter_space_pages(space["id"], limit=7)]
        assert len(titles) == 32 and len(set(titles)) == 32  # 30 + Interop + homepage

        interfered = False

        def transform(title: str, body: str) -> tuple[str, str]:
            nonlocal interfered
            if not interfered:  # a person saves between our read and our write
                interfered = True
                current = sim.store.contents[page.id]
                request: dict[str, Any] = {
                    "id": page.id,
                    "status": "current",
                    "title": title,
                    "body": {"representation": "storage", "value": body + "<p>by Ann</p>"},
                    "version": {"number": current.current.number + 1},
                }
                edits.update(actor_ctx(sim, person.account_id, request, SITE, id=page.id), "page")
            return title, body + "<p>footer</p>"

        result = await client.update_page(page.id, transform)
        assert result.changed and result.attempts == 2
        stored = sim.store.contents[page.id]
        assert [r.author_id for r in stored.revisions] == [
            app_user.account_id,
            person.account_id,
            app_user.account_id,
        ]
        assert stored.current.value == "<p>one</p><p>by Ann</p><p>footer</p>"
        comment = await client.create_footer_comment("<p>done</p>", page_id=page.id)
        assert sim.store.comments[comment.id].author_id == app_user.account_id
        calls = sim.counters.calls
        assert calls["PUT /wiki/api/v2/pages/{id} 409"] == 1
        assert calls["PUT /wiki/api/v2/pages/{id} 200"] == 1
        assert sum(v for k, v in sim.counters.auth_failures.items()) == 0
    finally:
        await http.aclose()
