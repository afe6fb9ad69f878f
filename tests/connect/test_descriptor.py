"""The descriptor: committed file, served copy, and the routes behind every URL it names."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.routing import Match

from app.descriptor import build_descriptor, descriptor_urls
from app.main import all_routes

from .conftest import ConnectApp

ROOT = Path(__file__).parent.parent.parent
REQUIRED_EVENTS = {
    "page_created",
    "page_updated",
    "page_trashed",
    "page_removed",
    "page_restored",
    "blog_created",
    "blog_updated",
    "comment_created",
    "comment_updated",
    "comment_removed",
    "label_added",
    "label_removed",
    "attachment_created",
}


def test_committed_file_is_the_rendered_descriptor() -> None:
    committed = json.loads((ROOT / "atlassian-connect.json").read_text())
    assert committed == build_descriptor(base_url="{{baseUrl}}", app_key="confluence-reactor")


def test_descriptor_contents() -> None:
    d = build_descriptor(base_url="https://r.example.com", app_key="k")
    assert d["authentication"] == {"type": "jwt"}
    assert d["apiVersion"] == 1
    assert d["apiMigrations"] == {"signed-install": True, "context-qsh": True}
    assert set(d["lifecycle"]) == {"installed", "uninstalled", "enabled", "disabled"}
    assert set(d["scopes"]) == {"READ", "WRITE"}
    hooks = d["modules"]["webhooks"]
    assert {h["event"] for h in hooks} == REQUIRED_EVENTS
    assert len({h["url"] for h in hooks}) == len(hooks), "each event needs its own URL"
    assert all(h["event"] in h["url"] for h in hooks)
    assert d["vendor"]["name"] and d["name"] and d["description"]


def test_every_descriptor_url_is_routed() -> None:
    routes = all_routes()
    d = build_descriptor(base_url="https://r.example.com", app_key="k")
    for url in descriptor_urls(d):
        scope = {"type": "http", "path": url, "method": "POST", "root_path": ""}
        assert any(r.matches(scope)[0] is Match.FULL for r in routes), url


async def test_served_with_base_url_and_app_key_from_settings(connect_app: ConnectApp) -> None:
    resp = await connect_app.client.get("/atlassian-connect.json")
    assert resp.status_code == 200
    served = resp.json()
    assert served["baseUrl"] == connect_app.settings.base_url == "https://reactor.test"
    assert served["key"] == connect_app.settings.app_key
