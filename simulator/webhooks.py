"""Delivers site events to installed apps: Connect webhooks and Forge trigger events.

Connect: ``POST {baseUrl}{webhook url}`` with ``Authorization: JWT`` (HS256, the tenant's shared
secret, ``iss`` = clientKey, ``qsh`` of the POST relative to the app's baseUrl); one attempt, as
Confluence makes. Forge: ``POST`` to the remote with a Forge Invocation Token (RS256 from the
simulator's JWKS) and an ``x-forge-oauth-system`` token; a non-2xx answer or a timeout is retried
4 times, 60 simulated seconds apart. Faults (drop, duplicate, delay, reorder) come from
``sim.faults``. Payloads are built when the event happens, deliveries run in one background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.atlassian.connect_jwt import encode_connect_token
from simulator.auth import token_key
from simulator.payloads import connect_payload, forge_payload
from simulator.site import ContentEvent, Simulator
from simulator.store import ForgeInstall, Token

FORGE_RETRIES = 4
FORGE_RETRY_DELAY = 60.0
FORGE_TIMEOUT = 5.0
FIT_LIFETIME = 25
SYSTEM_TOKEN_LIFETIME = 4 * 3600
SYSTEM_TOKEN_MIN_LEFT = 2 * 3600


@dataclass
class Delivery:
    kind: str  # connect | forge
    event: str
    url: str
    body: dict[str, Any]
    app: str
    attempt: int = 0
    outcome: str = "pending"
    status: int | None = None


@dataclass
class Hub:
    """Turns :class:`ContentEvent` into deliveries and sends them in the background."""

    sim: Simulator
    log: deque[Delivery] = field(default_factory=lambda: deque(maxlen=500))
    queue: asyncio.Queue[Delivery] | None = None
    client: httpx.AsyncClient | None = None
    task: asyncio.Task[None] | None = None
    pending: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    system_tokens: dict[str, str] = field(default_factory=dict)
    inflight: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.sim.listeners.append(self.on_event)
        self.idle.set()

    # -- building -------------------------------------------------------------------------
    def site_url(self) -> str:
        return (self.sim.public_url or "http://127.0.0.1").rstrip("/") + "/wiki"

    def on_event(self, event: ContentEvent) -> None:
        store = self.sim.store
        for app in store.connect_apps.values():
            if not app.enabled:
                continue
            for url in app.webhooks.get(event.name, []):
                body = connect_payload(store, self.site_url(), event)
                self._enqueue(
                    Delivery("connect", event.name, app.base_url.rstrip("/") + url, body, app.key)
                )
        for forge in store.forge_apps.values():
            body_or_none = forge_payload(store, event, forge.account_id)
            if body_or_none is not None and body_or_none["eventType"] in forge.events:
                self._enqueue(
                    Delivery(
                        "forge",
                        body_or_none["eventType"],
                        forge.remote_url,
                        body_or_none,
                        forge.installation_id,
                    )
                )

    def _enqueue(self, delivery: Delivery) -> None:
        counters = self.sim.counters.webhooks
        if self.sim.rng.random() < self.sim.faults.webhook_drop:
            delivery.outcome = "dropped"
            counters["dropped"] += 1
            self.log.append(delivery)
            return
        copies = 2 if self.sim.rng.random() < self.sim.faults.webhook_duplicate else 1
        if copies == 2:
            counters["duplicated"] += 1
        for _ in range(copies):
            self.log.append(delivery)
            if self.queue is None:
                delivery.outcome = "not-running"
                continue
            self.pending += 1
            self.idle.clear()
            self.queue.put_nowait(delivery)

    # -- running --------------------------------------------------------------------------
    def start(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.queue = asyncio.Queue()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task = None
        self.queue = None

    async def drain(self, limit: float = 10.0) -> None:
        """Wait until every queued delivery has finished (tests and the admin API)."""
        async with asyncio.timeout(limit):
            await self.idle.wait()

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            first = await self.queue.get()
            batch = [first]
            if self.sim.faults.webhook_reorder:
                with contextlib.suppress(TimeoutError):
                    batch.append(await asyncio.wait_for(self.queue.get(), 0.3))
                batch.reverse()
            for delivery in batch:
                await self._deliver(delivery)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.pending += 1
        self.idle.clear()
        task = asyncio.create_task(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def _deliver(self, delivery: Delivery, attempt: int = 0) -> None:
        """Deliver in order; a failed Forge attempt is retried later without blocking others."""
        try:
            if attempt == 0:
                await self.sim.clock.sleep(self.sim.faults.webhook_delay_seconds)
            else:
                await self.sim.clock.sleep(FORGE_RETRY_DELAY)
            if delivery.kind == "connect":
                await self._send_connect(delivery)
            elif not await self._send_forge(delivery, attempt):
                if attempt < FORGE_RETRIES and delivery.app in self.sim.store.forge_apps:
                    self._spawn(self._deliver(delivery, attempt + 1))
                else:
                    self._finish(delivery, False)
        finally:
            self.pending -= 1
            if self.pending <= 0:
                self.idle.set()

    async def _post(
        self, delivery: Delivery, headers: dict[str, str], body: bytes, wait: float
    ) -> bool:
        assert self.client is not None
        counters = self.sim.counters.webhooks
        counters["sent"] += 1
        delivery.attempt += 1
        try:
            response = await self.client.post(
                delivery.url, content=body, headers=headers, timeout=wait
            )
        except httpx.HTTPError:
            delivery.status = None
            return False
        delivery.status = response.status_code
        return 200 <= response.status_code < 300

    def _finish(self, delivery: Delivery, ok: bool) -> None:
        delivery.outcome = "delivered" if ok else "failed"
        self.sim.counters.webhooks["delivered" if ok else "failed"] += 1

    async def _send_connect(self, delivery: Delivery) -> None:
        app = self.sim.store.connect_apps.get(delivery.app)
        if app is None:
            self._finish(delivery, False)
            return
        token = encode_connect_token(
            issuer=app.client_key,
            secret=app.shared_secret,
            method="POST",
            url=delivery.url,
            base_url=app.base_url,
        )
        headers = {
            "Authorization": f"JWT {token}",
            "Content-Type": "application/json",
            "User-Agent": "Atlassian HttpClient (simulator)",
        }
        ok = await self._post(delivery, headers, json.dumps(delivery.body).encode(), 10.0)
        self._finish(delivery, ok)

    async def _send_forge(self, delivery: Delivery, attempt: int) -> bool:
        install = self.sim.store.forge_apps.get(delivery.app)
        if install is None:
            return False
        body = dict(delivery.body)
        if attempt:
            self.sim.counters.webhooks["retried"] += 1
            reason = (
                "INVALID_FORGE_INVOCATION_TOKEN"
                if delivery.status == 401
                else "TIMEOUT_ERROR"
                if delivery.status is None
                else "INVALID_REMOTE_INVOCATION_ERROR"
            )
            body["retryContext"] = {"retryCount": attempt, "retryReason": reason, "retryData": None}
        headers = {
            "Authorization": f"Bearer {self.invocation_token(install)}",
            "x-forge-oauth-system": self.system_token(install),
            "x-b3-traceid": secrets.token_hex(16),
            "x-b3-spanid": secrets.token_hex(8),
            "Content-Type": "application/json",
        }
        ok = await self._post(delivery, headers, json.dumps(body).encode(), FORGE_TIMEOUT)
        if ok:
            self._finish(delivery, True)
        return ok

    # -- Forge tokens ---------------------------------------------------------------------
    def api_base_url(self) -> str:
        origin = self.sim.gateway_url or self.sim.public_url or "http://127.0.0.1"
        return f"{origin.rstrip('/')}/ex/confluence/{self.sim.store.cloud_id}"

    def invocation_token(self, install: ForgeInstall) -> str:
        now = int(time.time())
        api_base = self.api_base_url()
        claims = {
            "iss": "forge/invocation-token",
            "aud": install.app_id,
            "iat": now,
            "nbf": now,
            "exp": now + FIT_LIFETIME,
            "jti": str(uuid.uuid4()),
            "app": {
                "id": install.app_id,
                "installationId": install.installation_id,
                "apiBaseUrl": api_base,
                "appVersion": "1.0.0",
                "environment": {
                    "type": install.environment,
                    "id": f"ari:cloud:ecosystem::environment/{uuid.uuid4()}",
                },
                "module": {"type": "core:endpoint", "key": "reactor-events"},
                "installation": {
                    "id": install.installation_id,
                    "contexts": [
                        {
                            "name": "confluence",
                            "cloudId": self.sim.store.cloud_id,
                            "apiBaseUrl": api_base,
                        }
                    ],
                },
            },
        }
        return self.sim.forge_key.sign(claims)

    def system_token(self, install: ForgeInstall) -> str:
        """A bearer token for the app's account, reused while it has 2 h or more left."""
        now = time.time()
        cached = self.system_tokens.get(install.installation_id)
        known = self.sim.store.tokens.get(token_key(cached)) if cached else None
        if cached and known and known.expires_at - now > SYSTEM_TOKEN_MIN_LEFT:
            return cached
        exp = int(now) + SYSTEM_TOKEN_LIFETIME
        raw = self.sim.forge_key.sign(
            {
                "iss": "sim/app-system-token",
                "sub": install.account_id,
                "aud": "api.atlassian.com",
                "iat": int(now),
                "exp": exp,
                "jti": str(uuid.uuid4()),
            }
        )
        self.sim.store.tokens[token_key(raw)] = Token(
            "forge", install.account_id, exp, install.app_id
        )
        self.system_tokens[install.installation_id] = raw
        return raw
