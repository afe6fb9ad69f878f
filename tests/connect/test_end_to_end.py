"""Real sockets: a signed install whose key comes from a local key server, then a webhook."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.atlassian.connect_jwt import encode_connect_token
from app.atlassian.events import event_id
from app.embedded_redis import free_port
from app.main import create_app
from app.queue import EventQueue
from app.settings import Settings
from tests.conftest import LiveServer

from .conftest import InstallKey, install_body, install_claims
from .test_webhooks import page_created


def key_server_app(keys: dict[str, bytes]) -> Starlette:
    async def public_key(request: Request) -> Response:
        pem = keys.get(request.path_params["kid"])
        if pem is None:
            return Response("no such key", status_code=404)
        return Response(pem, media_type="application/x-pem-file")

    return Starlette(routes=[Route("/{kid}", public_key)])


@pytest.fixture
def servers(
    settings: Settings, redis: Redis, install_key: InstallKey
) -> Iterator[tuple[LiveServer, LiveServer, Settings]]:
    keys = LiveServer(key_server_app({install_key.kid: install_key.public_pem}))
    keys.start()
    port = free_port()
    app_settings = settings.model_copy(
        update={
            "base_url": f"http://127.0.0.1:{port}",
            "connect_install_keys_url": keys.url,
            "connect_install_keys_timeout_seconds": 1.0,
        }
    )
    app = LiveServer(create_app(app_settings), port=port)
    app.start()
    yield app, keys, app_settings
    app.stop()
    keys.stop()


async def test_signed_install_then_webhook_over_real_sockets(
    servers: tuple[LiveServer, LiveServer, Settings], redis: Redis, install_key: InstallKey
) -> None:
    app, keys, app_settings = servers
    client_key, secret = f"ck-{uuid.uuid4()}", uuid.uuid4().hex * 2
    claims = install_claims(
        client_key=client_key, method="POST", path="/connect/installed", aud=app.url
    )
    async with httpx.AsyncClient(base_url=app.url, timeout=5) as client:
        installed = await client.post(
            "/connect/installed",
            json=install_body(client_key, secret),
            headers={"Authorization": f"JWT {install_key.sign(claims)}"},
        )
        assert installed.status_code == 204, installed.text

        path = "/connect/webhooks/page_created?lic=none"
        token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
        resp = await client.post(
            path, json=page_created(), headers={"Authorization": f"JWT {token}"}
        )
        assert resp.status_code == 204, resp.text

        keys.stop()  # the key server goes away: a new kid cannot be fetched
        other = InstallKey(install_key.private, "rotated-kid")
        claims = install_claims(
            client_key=client_key, method="POST", path="/connect/installed", aud=app.url
        )
        started = time.monotonic()
        down = await client.post(
            "/connect/installed",
            json=install_body(client_key, "new-" + secret),
            headers={"Authorization": f"JWT {other.sign(claims)}"},
        )
        assert down.status_code == 503
        assert down.json()["error"] == "install_keys_unavailable"
        assert time.monotonic() - started < 3

    body = page_created()
    expected = event_id(client_key, "page.created", "13139970", 1, int(str(body["timestamp"])))
    event = await EventQueue(redis, app_settings).get(expected)
    assert event is not None and event.tenant == client_key
