"""The web process: routes, middleware and the lifespan that owns every long-lived client."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app import redis as redis_conn
from app.dashboard import api as ops_api
from app.dashboard import routes as dashboard
from app.errors import ConfigError
from app.install_keys import InstallKeys, RedisKeyStore
from app.metrics import Metrics
from app.queue import EventQueue
from app.settings import Settings, load_settings
from app.tenants import TenantStore
from app.web import forge, health, lifecycle, responses, webhooks
from app.web.security import SecurityHeaders


def all_routes() -> list[BaseRoute]:
    # Webhooks first: routes are matched in order and they are the hot path (no paths overlap).
    return [
        *webhooks.routes,
        *health.routes,
        *forge.routes,
        *lifecycle.routes,
        *dashboard.routes,
        *ops_api.routes,
    ]


class ReactorApp(Starlette):
    """The app. Connect webhooks, the hot path, go straight to :func:`webhooks.serve`.

    Every other request goes through the middleware and the router, all inside
    :class:`~app.web.security.SecurityHeaders` (error pages included). A webhook answers
    exactly as it would through them (security headers, JSON error bodies, 500 on an
    unexpected error), without their per-request cost.
    """

    # The webhook's collaborators, read from ``state`` on first use; dropped when the
    # lifespan starts and ends (it replaces them).
    webhook_context: webhooks.WebhookContext | None = None

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack inside :class:`SecurityHeaders`: the 500 that its outermost
        ``ServerErrorMiddleware`` answers for an unexpected error carries the headers too."""
        return SecurityHeaders(super().build_middleware_stack())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            name = webhooks.event_in_path(scope["path"])
            if name is not None:
                scope["app"] = self
                await webhooks.serve(scope, receive, send, name)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, redis: Redis | None = None) -> Starlette:
    """Build the Starlette app. ``redis`` may be injected (tests); otherwise it is made here."""
    settings = settings or load_settings()
    if redis is None and settings.redis_url is None:
        raise ConfigError(
            "REACTOR_REDIS_URL: required (embedded Redis exists in `reactor dev` only)"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Every reply is bounded: a Redis that stops answering (not one that is down, which
        # refuses at once) must give the dashboard and the ops API a 503, not a request that
        # hangs for as long as the stall.
        client = (
            redis
            if redis is not None
            else redis_conn.connect(
                str(settings.redis_url), socket_timeout=settings.redis_timeout_seconds
            )
        )
        app.state.redis = client
        app.state.queue = EventQueue(client, settings)
        app.state.tenants = TenantStore(client, settings)
        install_keys_http = httpx.AsyncClient(timeout=settings.connect_install_keys_timeout_seconds)
        app.state.install_keys = InstallKeys(
            install_keys_http,
            settings.connect_install_keys_url,
            timeout=settings.connect_install_keys_timeout_seconds,
            store=RedisKeyStore(client, settings),
        )
        app.state.forge = forge.ForgeRemote(settings, client)
        if isinstance(app, ReactorApp):
            app.webhook_context = None
        try:
            yield
        finally:
            if isinstance(app, ReactorApp):
                app.webhook_context = None
            await install_keys_http.aclose()
            await app.state.forge.aclose()
            if redis is None:
                await client.aclose()

    app = ReactorApp(
        routes=all_routes(),
        exception_handlers={
            **responses.exception_handlers,
            HTTPException: responses.http_error,
            Exception: responses.server_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    return app


def factory() -> Starlette:
    """Entry point for ``uvicorn --factory app.main:factory``: settings from the environment."""
    from app.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    freeze_heap()
    return app


def freeze_heap() -> None:
    """Tune the cyclic collector for a server whose start-up objects live as long as it does.

    Everything imported and built so far is moved out of the collector's reach, so a full
    collection walks only what requests made since (tens of ms per full collection otherwise,
    felt as p99 latency on the ingest path). Requests leave no cyclic garbage, yet dozens of them
    in flight pass the default 700 new objects many times a second: the youngest generation is
    collected less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
