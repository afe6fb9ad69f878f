"""A minimal Connect + Forge app for end-to-end tests of the simulator's outgoing calls.

It verifies exactly what a real app must: the signed install (RS256, key fetched by ``kid`` from
the simulator's key URL, ``aud``, ``iss``, ``qsh``), webhooks with the project's own Connect
verifier, and Forge events with the project's own FIT verifier against the simulator's JWKS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.atlassian.connect_jwt import extract_token, verify_connect_token
from app.atlassian.forge_token import verify_token
from app.atlassian.qsh import query_string_hash
from app.errors import VerificationError

EVENTS = ["page_created", "page_updated", "page_trashed", "comment_created", "label_added"]
FORGE_APP = "ari:cloud:ecosystem::app/00000000-0000-0000-0000-000000000001"


@dataclass
class FakeApp:
    sim_url: str
    base_url: str = ""
    secrets: dict[str, str] = field(default_factory=dict)
    installs: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    forge: list[dict[str, Any]] = field(default_factory=list)
    system_tokens: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    forge_failures: int = 0

    def descriptor(self, request: Request) -> Response:
        return JSONResponse(
            {
                "key": "confluence-reactor",
                "name": "Reactor",
                "baseUrl": self.base_url,
                "authentication": {"type": "jwt"},
                "apiVersion": 1,
                "scopes": ["READ", "WRITE"],
                "apiMigrations": {"signed-install": True, "context-qsh": True},
                "lifecycle": {
                    "installed": "/connect/installed",
                    "uninstalled": "/connect/uninstalled",
                },
                "modules": {
                    "webhooks": [{"event": e, "url": f"/connect/webhooks/{e}"} for e in EVENTS]
                },
            }
        )

    async def installed(self, request: Request) -> Response:
        body = await request.json()
        token = extract_token(request.headers.get("authorization"), "")
        kid = jwt.get_unverified_header(token)["kid"]
        async with httpx.AsyncClient() as client:
            pem = (await client.get(f"{self.sim_url}/_sim/install-keys/{kid}")).text
        claims = jwt.decode(token, pem, algorithms=["RS256"], audience=self.base_url)
        url = f"{self.base_url}{request.url.path}"
        if claims["iss"] != body["clientKey"] or claims["qsh"] != query_string_hash(
            "POST", url, self.base_url
        ):
            return Response(status_code=401)
        if body["eventType"] == "installed":
            self.secrets[body["clientKey"]] = body["sharedSecret"]
        self.installs.append(body)
        return Response(status_code=204)

    async def webhook(self, request: Request) -> Response:
        try:
            token = extract_token(request.headers.get("authorization"), request.url.query)
            verify_connect_token(
                token,
                secret_for=self.secrets.get,
                method="POST",
                url=request.url.path,
                base_url=self.base_url,
            )
        except VerificationError as exc:
            self.rejected.append(exc.code)
            return JSONResponse({"error": exc.code}, status_code=401)
        self.webhooks.append((request.path_params["event"], await request.json()))
        return Response(status_code=204)

    async def forge_event(self, request: Request) -> Response:
        async with httpx.AsyncClient() as client:
            jwks = (await client.get(f"{self.sim_url}/_sim/forge/jwks.json")).json()
        keys = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}
        token = request.headers["authorization"].removeprefix("Bearer ")
        try:
            verify_token(token, keys, app_id=FORGE_APP, now=time.time())
        except VerificationError as exc:
            self.rejected.append(exc.code)
            return JSONResponse({"error": exc.code}, status_code=401)
        body = await request.json()
        self.system_tokens.append(request.headers["x-forge-oauth-system"])
        if self.forge_failures > 0:
            self.forge_failures -= 1
            return Response(status_code=500)
        self.forge.append(body)
        return JSONResponse({})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/atlassian-connect.json", self.descriptor),
                Route("/connect/installed", self.installed, methods=["POST"]),
                Route("/connect/uninstalled", self.installed, methods=["POST"]),
                Route("/connect/webhooks/{event}", self.webhook, methods=["POST"]),
                Route("/forge/events", self.forge_event, methods=["POST"]),
            ]
        )
