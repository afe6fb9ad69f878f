"""The Connect app descriptor (``atlassian-connect.json``), built from the settings.

The committed ``atlassian-connect.json`` is this descriptor rendered with the default app key
and ``{{baseUrl}}`` in place of the base URL; a test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

from app.atlassian.events import CONNECT_EVENTS

LIFECYCLE_PATHS = {
    "installed": "/connect/installed",
    "uninstalled": "/connect/uninstalled",
    "enabled": "/connect/enabled",
    "disabled": "/connect/disabled",
}
WEBHOOK_PATH = "/connect/webhooks/{event}"
SCOPES = ["READ", "WRITE"]


def webhook_path(event: str) -> str:
    return WEBHOOK_PATH.format(event=event)


def build_descriptor(*, base_url: str, app_key: str) -> dict[str, Any]:
    """The descriptor Atlassian reads when the app is installed from ``base_url``."""
    return {
        "key": app_key,
        "name": "Confluence Reactor",
        "description": "Automated, safe reactions to Confluence page events.",
        "vendor": {"name": "Confluence Reactor", "url": "https://example.com"},
        "baseUrl": base_url,
        "authentication": {"type": "jwt"},
        "apiVersion": 1,
        "apiMigrations": {"signed-install": True, "context-qsh": True},
        "lifecycle": dict(LIFECYCLE_PATHS),
        "scopes": list(SCOPES),
        "modules": {
            "webhooks": [
                {"event": event, "url": webhook_path(event), "excludeBody": False}
                for event in CONNECT_EVENTS
            ]
        },
    }


def descriptor_urls(descriptor: dict[str, Any]) -> list[str]:
    """Every path the descriptor names (lifecycle and webhooks), relative to ``baseUrl``."""
    urls = list(descriptor.get("lifecycle", {}).values())
    urls += [hook["url"] for hook in descriptor.get("modules", {}).get("webhooks", [])]
    return urls
