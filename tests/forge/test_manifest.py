"""manifest.yml: every reference resolves, every event is documented, every route exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from app.atlassian.events import FORGE_EVENTS
from app.main import all_routes
from app.web.forge import LIFECYCLE_EVENTS
from tests.forge.conftest import FORGE_FIXTURES

ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return data


@pytest.fixture(scope="module")
def documented() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FORGE_FIXTURES / "confluence-events.json").read_text())
    return data


def test_top_level_shape(manifest: dict[str, Any]) -> None:
    assert set(manifest) >= {"app", "modules", "permissions", "remotes"}
    assert re.fullmatch(r"ari:cloud:ecosystem::app/[0-9a-f-]{36}", manifest["app"]["id"])
    assert manifest["app"]["runtime"]["name"] in ("nodejs24.x", "nodejs22.x", "nodejs20.x")


def test_every_reference_resolves(manifest: dict[str, Any]) -> None:
    modules = manifest["modules"]
    remotes = {r["key"]: r for r in manifest["remotes"]}
    endpoints = {e["key"]: e for e in modules["endpoint"]}
    for remote in remotes.values():
        assert KEY.match(remote["key"]) and len(remote["key"]) <= 23
        assert remote["baseUrl"].startswith("https://")
        assert "compute" in remote["operations"]
        if "storage" in remote["operations"]:
            assert isinstance(remote["storage"]["inScopeEUD"], bool)
    for endpoint in endpoints.values():
        assert KEY.match(endpoint["key"]) and len(endpoint["key"]) <= 23
        assert endpoint["remote"] in remotes
        assert endpoint["route"]["path"].startswith("/forge/")
        assert endpoint["auth"]["appSystemToken"]["enabled"] is True
    users = [*modules["trigger"], *modules["scheduledTrigger"], *modules["preUninstall"]]
    for module in users:
        assert KEY.match(module["key"])
        assert module["endpoint"] in endpoints, module["key"]
        assert "function" not in module
    used = {m["endpoint"] for m in users}
    assert used == set(endpoints), "every endpoint is used by a module"
    assert [t["interval"] for t in modules["scheduledTrigger"]] == ["hour"]


def test_every_event_is_documented_and_handled(
    manifest: dict[str, Any], documented: dict[str, Any]
) -> None:
    known = set(documented["confluence"]) | set(documented["lifecycle"])
    handled = set(FORGE_EVENTS) | set(LIFECYCLE_EVENTS)
    subscribed: list[str] = []
    for trigger in manifest["modules"]["trigger"]:
        events = trigger["events"]
        subscribed += events
        assert set(events) <= known, set(events) - known
        assert set(events) <= handled, set(events) - handled
        if any(e.startswith("avi:confluence:") for e in events):
            assert trigger["filter"]["ignoreSelf"] is True
    assert len(subscribed) == len(set(subscribed))
    assert set(LIFECYCLE_EVENTS) <= set(subscribed)
    for name in (
        "avi:confluence:created:page",
        "avi:confluence:updated:page",
        "avi:confluence:trashed:page",
        "avi:confluence:deleted:page",
        "avi:confluence:restored:page",
        "avi:confluence:created:blogpost",
        "avi:confluence:updated:blogpost",
        "avi:confluence:created:comment",
        "avi:confluence:updated:comment",
        "avi:confluence:deleted:comment",
        "avi:confluence:created:label",
        "avi:confluence:deleted:label",
        "avi:confluence:created:attachment",
    ):
        assert name in subscribed


def test_every_endpoint_route_exists_in_the_app(manifest: dict[str, Any]) -> None:
    routes = {r.path: r for r in all_routes() if isinstance(r, Route)}
    for endpoint in manifest["modules"]["endpoint"]:
        path = endpoint["route"]["path"]
        assert path in routes, path
        assert "POST" in (routes[path].methods or set())
    forge_paths = {p for p in routes if p.startswith("/forge/")}
    assert forge_paths == {e["route"]["path"] for e in manifest["modules"]["endpoint"]}


def test_scopes(manifest: dict[str, Any]) -> None:
    scopes = set(manifest["permissions"]["scopes"])
    assert scopes >= {
        "read:page:confluence",
        "write:page:confluence",
        "read:comment:confluence",
        "write:comment:confluence",
        "delete:comment:confluence",
        "read:space:confluence",
        "read:attachment:confluence",
        "read:label:confluence",
        "read:hierarchical-content:confluence",
        "read:content-details:confluence",
        "read:confluence-content.summary",
        "read:app-system-token",
        "write:confluence-content",
        "read:confluence-space.summary",
    }
    assert not any(":summary" in s and ".summary" not in s for s in scopes)


def test_each_route_accepts_the_modules_the_manifest_sends_it(manifest: dict[str, Any]) -> None:
    """ROUTE_MODULES (the module check on tokens) is the manifest's wiring, route by route."""
    from app.web.forge import ROUTE_MODULES

    modules = manifest["modules"]
    path_of = {e["key"]: e["route"]["path"] for e in modules["endpoint"]}
    senders: dict[str, set[str]] = {path: {key} for key, path in path_of.items()}
    for kind in ("trigger", "scheduledTrigger", "preUninstall"):
        for module in modules.get(kind, []):
            senders[path_of[module["endpoint"]]].add(module["key"])
    assert {f"/forge/{route}": set(keys) for route, keys in ROUTE_MODULES.items()} == senders
