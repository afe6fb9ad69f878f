"""``/_sim/apps`` and ``/_sim/oauth``: install and uninstall apps, issue bearer tokens."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from simulator.admin import AdminError, admin, find_user, hub_of
from simulator.api import site_base
from simulator.auth import token_key
from simulator.install import InstallError, install, uninstall
from simulator.payloads import FORGE_NAMES
from simulator.site import Simulator
from simulator.store import ForgeInstall, Token


async def connect_install(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    try:
        app = await install(
            sim, request.app.state.http, str(body["descriptorUrl"]), site_base(sim, request)
        )
    except InstallError as exc:
        raise AdminError(502, "install_failed", str(exc)) from None
    return {
        "key": app.key,
        "clientKey": app.client_key,
        "accountId": app.account_id,
        "baseUrl": app.base_url,
        "webhooks": sorted(app.webhooks),
    }


async def connect_uninstall(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    done = await uninstall(
        sim, request.app.state.http, request.path_params["key"], site_base(sim, request)
    )
    if not done:
        raise AdminError(404, "unknown_app", "no installed app with this key")
    return Response(status_code=204)


def add_forge_install(
    sim: Simulator,
    app_id: str,
    url: str,
    *,
    events: list[str] | None = None,
    environment: str = "DEVELOPMENT",
    name: str = "Forge app",
) -> ForgeInstall:
    """Install a Forge app whose triggers go to ``url``; the same app and URL again is kept."""
    for existing in sim.store.forge_apps.values():
        if existing.app_id == app_id and existing.remote_url == url:
            return existing
    user = sim.store.add_user(
        f"{uuid.uuid4().hex[:8]}@forge.atlassian.com", name, api_token="", account_type="app"
    )
    forge = ForgeInstall(
        app_id=app_id,
        installation_id=f"ari:cloud:ecosystem::installation/{uuid.uuid4()}",
        remote_url=url,
        events=list(events or FORGE_NAMES.values()),
        account_id=user.account_id,
        environment=environment,
    )
    sim.store.forge_apps[forge.installation_id] = forge
    sim.save_soon()
    return forge


async def forge_install(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    forge = add_forge_install(
        sim,
        str(body["appId"]),
        str(body["url"]),
        events=list(body.get("events") or []) or None,
        environment=str(body.get("environment", "DEVELOPMENT")),
        name=str(body.get("name", "Forge app")),
    )
    return {
        "installationId": forge.installation_id,
        "accountId": forge.account_id,
        "apiBaseUrl": hub_of(request).api_base_url(),
        "events": forge.events,
    }


async def forge_token(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    """The app system token Forge hands the app with each invocation (``x-forge-oauth-system``),
    for callers that act outside an event (benchmarks, scripts)."""
    install = sim.store.forge_apps.get(str(body.get("installationId")))
    if install is None:
        raise AdminError(404, "unknown_installation", "no such Forge installation")
    return {"token": hub_of(request).system_token(install), "tokenType": "Bearer"}


async def forge_uninstall(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if sim.store.forge_apps.pop(request.path_params["installation"], None) is None:
        raise AdminError(404, "unknown_installation", "no such Forge installation")
    return Response(status_code=204)


async def apps(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return {
        "connect": [
            {
                "key": a.key,
                "clientKey": a.client_key,
                "baseUrl": a.base_url,
                "accountId": a.account_id,
                "webhooks": sorted(a.webhooks),
            }
            for a in sim.store.connect_apps.values()
        ],
        "forge": [
            {
                "appId": f.app_id,
                "installationId": f.installation_id,
                "url": f.remote_url,
                "accountId": f.account_id,
            }
            for f in sim.store.forge_apps.values()
        ],
    }


async def oauth_token(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = find_user(sim, body.get("as"))
    lifetime = int(body.get("expiresIn", 3600))
    raw = secrets.token_urlsafe(32)
    sim.store.tokens[token_key(raw)] = Token("oauth", user.account_id, time.time() + lifetime)
    return {
        "access_token": raw,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": "read:page:confluence write:page:confluence",
    }


routes = [
    admin("/apps", apps),
    admin("/apps/connect", connect_install, "POST"),
    admin("/apps/connect/{key}", connect_uninstall, "DELETE"),
    admin("/apps/forge", forge_install, "POST"),
    admin("/apps/forge/token", forge_token, "POST"),
    admin("/apps/forge/{installation:path}", forge_uninstall, "DELETE"),
    admin("/oauth/tokens", oauth_token, "POST"),
]
