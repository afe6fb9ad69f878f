"""Atlassian's security requirements for cloud apps, checked the way its scanner does."""

from __future__ import annotations

import re
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from app.descriptor import descriptor_urls
from app.devcert import dev_certificate
from app.embedded_redis import free_port
from app.main import create_app
from app.settings import Settings
from tests.conftest import LiveServer

from .conftest import ConnectApp, InstallKey, install_claims

ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def forged_tokens(app: ConnectApp, client_key: str, path: str, method: str) -> list[str]:
    claims = install_claims(
        client_key=client_key, method=method, path=path, aud=app.settings.base_url
    )
    attacker = ATTACKER_KEY
    return [
        jwt.encode(claims, "guessed-secret-" + "g" * 32, algorithm="HS256"),
        jwt.encode(claims, "", algorithm="none"),
        InstallKey(attacker, app.install_key.kid).sign(claims),
        InstallKey(attacker, "unknown-kid").sign(claims),
        "not-a-jwt",
    ]


def assert_security_headers(resp: httpx.Response, *, https: bool) -> None:
    cache = resp.headers.get("cache-control", "")
    assert "no-cache" in cache and "no-store" in cache, resp.headers
    assert resp.headers.get("x-content-type-options") == "nosniff"
    policy = resp.headers.get("referrer-policy", "")
    assert policy and policy not in ("unsafe-url", "no-referrer-when-downgrade")
    hsts = resp.headers.get("strict-transport-security")
    if https:
        assert hsts is not None
        max_age = re.search(r"max-age=(\d+)", hsts)
        assert max_age and int(max_age.group(1)) >= 31536000
    else:
        assert hsts is None
    assert "set-cookie" not in resp.headers
    policy = resp.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, resp.headers


async def test_every_descriptor_url_refuses_missing_and_forged_tokens(
    connect_app: ConnectApp,
) -> None:
    client_key, _ = await connect_app.install()
    descriptor = (await connect_app.client.get("/atlassian-connect.json")).json()
    urls = descriptor_urls(descriptor)
    assert len(urls) == 4 + 13
    checked = 0
    for url in urls:
        for method in ("GET", "POST", "PUT", "DELETE"):
            body = {"clientKey": client_key, "baseUrl": "https://example.atlassian.net/wiki"}
            resp = await connect_app.client.request(method, url, json=body)
            if (method, url) == ("POST", "/connect/disabled"):
                # sent unsigned after an uninstall (AC-2561): acknowledged, changes nothing
                assert resp.status_code == 204, resp.text
                tenant = await connect_app.app.state.tenants.get(client_key)
                assert tenant is not None and tenant.status == "installed"
            else:
                assert resp.status_code in (401, 403), (method, url, resp.status_code)
            assert_security_headers(resp, https=True)
            for token in forged_tokens(connect_app, client_key, url, method):
                resp = await connect_app.client.request(
                    method, url, json=body, headers={"Authorization": f"JWT {token}"}
                )
                assert resp.status_code in (401, 403), (method, url, resp.text)
                assert resp.json()["error"]
                checked += 1
    assert checked == len(urls) * 4 * 5


async def test_headers_on_success_and_error_responses(connect_app: ConnectApp) -> None:
    for resp in [
        await connect_app.client.get("/atlassian-connect.json"),
        await connect_app.client.get("/healthz"),
        await connect_app.client.get("/no-such-page"),
        await connect_app.client.post("/connect/webhooks/page_created"),
    ]:
        assert_security_headers(resp, https=True)


async def test_hsts_only_over_https_and_from_a_trusted_proxy(
    live_server: Callable[[], LiveServer],
) -> None:
    server = live_server()
    async with httpx.AsyncClient(base_url=server.url) as client:
        plain = await client.get("/atlassian-connect.json")
        assert_security_headers(plain, https=False)
        proxied = await client.get(
            "/atlassian-connect.json", headers={"X-Forwarded-Proto": "https"}
        )
        assert_security_headers(proxied, https=True)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (the one `reactor dev --forge` makes)."""
    return dev_certificate(tmp_path)


@pytest.fixture
def tls_server(settings: Settings, tls_files: tuple[Path, Path]) -> Iterator[int]:
    """The app over TLS, served by uvicorn as `reactor web --ssl-certfile/--ssl-keyfile` does."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(tls_files[0]),
        ssl_keyfile=str(tls_files[1]),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(10)


def client_context(cert: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = version
    return ctx


async def test_tls_server_speaks_tls12_and_up_only(
    tls_server: int, tls_files: tuple[Path, Path]
) -> None:
    url = f"https://localhost:{tls_server}/atlassian-connect.json"
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        async with httpx.AsyncClient(verify=client_context(tls_files[0], version)) as client:
            resp = await client.get(url)
            assert resp.status_code == 200
            assert_security_headers(resp, https=True)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(
            verify=client_context(tls_files[0], ssl.TLSVersion.TLSv1_1)
        ) as client:
            await client.get(url)


def test_reactor_web_serves_tls_and_trusts_forwarded_proto_from_its_proxies(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tls_files: tuple[Path, Path]
) -> None:
    import app.logs
    from app.cli import main
    from app.web_server import AnnouncingServer

    seen: list[uvicorn.Config] = []

    def run(self: AnnouncingServer, sockets: object = None) -> None:
        seen.append(self.config)
        self.started = True

    monkeypatch.setattr(AnnouncingServer, "run", run)
    monkeypatch.setattr(app.logs, "configure_logging", lambda *a, **kw: None)
    monkeypatch.setenv("REACTOR_REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("REACTOR_SECRET_KEY", settings.secret_keys[0])
    cert, key = (str(path) for path in tls_files)
    argv = ["web", "--ssl-certfile", cert, "--ssl-keyfile", key]
    assert main([*argv, "--forwarded-allow-ips", "10.0.0.7"]) == 0
    (config,) = seen
    assert (config.ssl_certfile, config.ssl_keyfile) == (cert, key)
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == "10.0.0.7"
