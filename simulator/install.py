"""Installing a Connect app the way Confluence does: descriptor, signed install, shared secret.

The ``installed`` and ``uninstalled`` callbacks carry ``Authorization: JWT`` with an RS256 token
whose header names the simulator's key id (``kid``); the app fetches the public key from
``{simulator}/_sim/install-keys/<kid>`` (its ``REACTOR_CONNECT_INSTALL_KEYS_URL``). Claims:
``iss`` = clientKey, ``aud`` = the app's baseUrl, ``qsh`` of the POST relative to that baseUrl.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from typing import Any

import httpx

from app.atlassian.qsh import query_string_hash
from simulator.site import Simulator
from simulator.store import ConnectInstall

INSTALL_TOKEN_LIFETIME = 180


class InstallError(Exception):
    """The descriptor could not be used or the app refused the lifecycle call."""


def parse_descriptor(data: Any) -> dict[str, Any]:
    """The descriptor parts an install needs, validated (pure)."""
    if not isinstance(data, dict):
        raise InstallError("descriptor is not a JSON object")
    key, base_url = data.get("key"), data.get("baseUrl")
    if not isinstance(key, str) or not key or not isinstance(base_url, str) or not base_url:
        raise InstallError("descriptor needs key and baseUrl")
    lifecycle = data.get("lifecycle") or {}
    if not isinstance(lifecycle, dict) or not isinstance(lifecycle.get("installed"), str):
        raise InstallError("descriptor has no lifecycle.installed URL")
    if (data.get("authentication") or {}).get("type", "").lower() != "jwt":
        raise InstallError("descriptor authentication.type must be jwt")
    hooks: dict[str, list[str]] = {}
    for module in (data.get("modules") or {}).get("webhooks", []) or []:
        if isinstance(module, dict) and isinstance(module.get("event"), str):
            hooks.setdefault(module["event"], []).append(str(module.get("url", "")))
    return {
        "key": key,
        "base_url": base_url.rstrip("/"),
        "lifecycle": lifecycle,
        "webhooks": hooks,
        "scopes": [str(s).upper() for s in data.get("scopes", []) or []],
        "name": str(data.get("name") or key),
        "description": str(data.get("description") or ""),
    }


def install_token(sim: Simulator, *, client_key: str, app_base_url: str, url: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client_key,
        "aud": app_base_url,
        "iat": now,
        "exp": now + INSTALL_TOKEN_LIFETIME,
        "qsh": query_string_hash("POST", url, app_base_url),
        "context": {},
    }
    return sim.install_key.sign(claims)


def lifecycle_body(
    sim: Simulator, app: ConnectInstall, site: str, event: str, description: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": app.key,
        "clientKey": app.client_key,
        "baseUrl": site,
        "displayUrl": site,
        "productType": "confluence",
        "description": description or "Confluence simulator",
        "eventType": event,
        "serverVersion": "6452",
        "pluginsVersion": "1001.0.0-SNAPSHOT",
        "oauthClientId": app.oauth_client_id,
        "cloudId": sim.store.cloud_id,
    }
    if app.installation_id:
        body["installationId"] = app.installation_id
    if event == "installed":
        body["sharedSecret"] = app.shared_secret
    return body


async def _call(
    sim: Simulator, client: httpx.AsyncClient, app: ConnectInstall, site: str, event: str
) -> httpx.Response:
    path = app.lifecycle.get(event)
    if not path:
        raise InstallError(f"descriptor has no lifecycle.{event}")
    url = app.base_url + path
    token = install_token(sim, client_key=app.client_key, app_base_url=app.base_url, url=url)
    body = lifecycle_body(sim, app, site, event)
    return await client.post(
        url, json=body, headers={"Authorization": f"JWT {token}"}, timeout=10.0
    )


async def install(
    sim: Simulator,
    client: httpx.AsyncClient,
    descriptor_url: str,
    site: str,
    *,
    installation_id: str = "",
) -> ConnectInstall:
    """Fetch the descriptor, send the signed ``installed`` callback, record the app.

    ``installation_id``: the Forge installation of the same app (see
    :attr:`~simulator.store.ConnectInstall.installation_id`); a reinstall keeps the one it had.
    """
    try:
        response = await client.get(descriptor_url, timeout=10.0)
        response.raise_for_status()
        descriptor = parse_descriptor(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        raise InstallError(f"could not read the descriptor: {type(exc).__name__}") from None
    store = sim.store
    previous = store.connect_apps.get(descriptor["key"]) or store.departed_apps.get(
        descriptor["key"]
    )
    account_id = (
        previous.account_id
        if previous
        else store.add_user(
            f"{descriptor['key']}@connect.atlassian.com",
            descriptor["name"],
            api_token="",
            account_type="app",
        ).account_id
    )
    app = ConnectInstall(
        key=descriptor["key"],
        base_url=descriptor["base_url"],
        client_key=previous.client_key if previous else str(uuid.uuid4()),
        shared_secret=secrets.token_urlsafe(32),
        account_id=account_id,
        webhooks=descriptor["webhooks"],
        lifecycle=descriptor["lifecycle"],
        scopes=descriptor["scopes"],
        oauth_client_id=previous.oauth_client_id if previous else f"sim-{uuid.uuid4().hex[:16]}",
        installation_id=installation_id or (previous.installation_id if previous else ""),
    )
    try:
        answer = await _call(sim, client, app, site, "installed")
    except httpx.HTTPError as exc:
        raise InstallError(f"installed callback failed: {type(exc).__name__}") from None
    if answer.status_code not in (200, 204):
        raise InstallError(f"the app answered the installed callback with {answer.status_code}")
    store.connect_apps[app.key] = app
    store.departed_apps.pop(app.key, None)
    sim.save_soon()
    return app


async def uninstall(sim: Simulator, client: httpx.AsyncClient, key: str, site: str) -> bool:
    """Send the signed ``uninstalled`` callback (best effort); the app stops receiving
    anything, and only its identity is kept for a later install (same clientKey)."""
    app = sim.store.connect_apps.pop(key, None)
    if app is None:
        return False
    sim.store.departed_apps[key] = app
    if app.lifecycle.get("uninstalled"):
        with contextlib.suppress(httpx.HTTPError):
            await _call(sim, client, app, site, "uninstalled")
    sim.save_soon()
    return True
