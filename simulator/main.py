"""The simulator's app factory: product API, gateway, admin API, lifespan. Wiring only.

::

    /wiki/api/v2/...                       v2 product API (Basic, Connect JWT)
    /wiki/rest/api/search[/user]           v1 search
    /ex/confluence/{cloudId}/wiki/...      the same behind the gateway (OAuth and Forge bearers)
    /_sim/...                              admin API (see simulator/README.md)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator import (
    actas,
    acting,
    admin,
    apps,
    attachments,
    comments,
    labels,
    pages,
    search,
    spaces,
)
from simulator.api import GATEWAY_KEY
from simulator.apps import add_forge_install
from simulator.demo import install_when_ready, keep_acting
from simulator.site import Simulator
from simulator.webhooks import Hub

SAVE_INTERVAL = 2.0


class Gateway:
    """Serves ``/ex/confluence/{cloudId}/wiki/...`` as ``/wiki/...`` for bearer-token callers."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/ex/confluence/"):
            parts = scope["path"].split("/", 4)  # '', ex, confluence, cloudId, rest
            if (
                len(parts) < 5
                or parts[3] != self.sim.store.cloud_id
                or not parts[4].startswith("wiki/")
            ):
                response = JSONResponse({"code": 404, "message": "Not Found"}, status_code=404)
                await response(scope, receive, send)
                return
            scope = dict(scope)
            prefix = f"/ex/confluence/{parts[3]}"
            scope["path"] = scope["path"][len(prefix) :]
            scope["raw_path"] = scope.get("raw_path", b"")[len(prefix) :] or scope["path"].encode()
            scope[GATEWAY_KEY] = parts[3]
        await self.app(scope, receive, send)


def create_app(
    sim: Simulator,
    *,
    http: httpx.AsyncClient | None = None,
    install_app: str | None = None,
    install_forge: tuple[str, str] | None = None,
    demo_activity: float = 0.0,
) -> Starlette:
    """The simulator as an ASGI app; ``http`` delivers webhooks and installs (else one is made).

    ``install_app``: a descriptor URL installed (signed install) as soon as it answers.
    ``install_forge``: (app id, remote URL) of a Forge installation made at start; with
    ``install_app`` it is the same app's, named in the Connect install (one tenant, both routes).
    ``demo_activity``: once ``install_app`` is installed, a demo user acts (edit, comment or
    label) at once and then every this many seconds (0: never).
    """
    hub = Hub(sim)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = http or httpx.AsyncClient(follow_redirects=False)
        app.state.http = client
        hub.start(client)
        tasks = [asyncio.create_task(_autosave(sim))]
        forge = add_forge_install(sim, *install_forge) if install_forge else None
        if forge is not None:
            print(f"forge      {forge.app_id} -> {forge.remote_url}", flush=True)
        if install_app:
            linked = forge.installation_id if forge is not None else ""
            tasks.append(
                asyncio.create_task(
                    _install(sim, client, install_app, linked, demo_activity),
                )
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await hub.stop()
            if sim.dirty:
                sim.save()
            if http is None:
                await client.aclose()

    v2 = [*pages.routes, *spaces.routes, *labels.routes, *attachments.routes, *comments.routes]
    routes: list[Any] = [
        Mount("/wiki/api/v2", routes=v2),
        Mount("/wiki/rest/api", routes=search.routes),
        *admin.routes,
        *acting.routes,
        *apps.routes,
        *actas.routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = sim
    app.state.hub = hub
    app.add_middleware(Gateway, sim=sim)
    return app


async def _install(
    sim: Simulator, client: httpx.AsyncClient, descriptor: str, linked: str, every: float
) -> None:
    if await install_when_ready(sim, client, descriptor, installation_id=linked) and every > 0:
        await keep_acting(sim, every)


async def _autosave(sim: Simulator) -> None:
    while True:
        await asyncio.sleep(SAVE_INTERVAL)
        if sim.dirty and sim.state_path is not None:
            sim.save()
