"""Connect test fixtures: an RSA install key, signed installs, the app with its lifespan."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from redis.asyncio import Redis
from starlette.applications import Starlette

from app.atlassian.qsh import query_string_hash
from app.install_keys import InstallKeys
from app.main import create_app
from app.settings import Settings

KID = "test-install-key-1"
FIXTURES_DIR = Path(__file__).parent.parent / "fixtures" / "connect"


@dataclass
class InstallKey:
    private: rsa.RSAPrivateKey
    kid: str

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        """An RS256 token, signed with PyJWT (independently of the code under test)."""
        return jwt.encode(
            claims, self.private, algorithm="RS256", headers={"kid": self.kid, **(headers or {})}
        )


@pytest.fixture(scope="session")
def install_key() -> InstallKey:
    return InstallKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), KID)


def install_claims(
    *, client_key: str, method: str, path: str, aud: str, now: int | None = None
) -> dict[str, Any]:
    issued = int(time.time()) if now is None else now
    return {
        "iss": client_key,
        "aud": aud,
        "iat": issued,
        "exp": issued + 180,
        "qsh": query_string_hash(method, path),
        "sub": "557058:installer",
        "context": {},
    }


def install_body(
    client_key: str,
    secret: str,
    *,
    event: str = "installed",
    installation_id: str | None = None,
    base_url: str = "https://example.atlassian.net/wiki",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": "confluence-reactor",
        "clientKey": client_key,
        "sharedSecret": secret,
        "baseUrl": base_url,
        "displayUrl": base_url,
        "productType": "confluence",
        "description": "Atlassian Confluence at https://example.atlassian.net/wiki",
        "serviceEntitlementNumber": "SEN-1",
        "oauthClientId": "oauth-client-1",
        "eventType": event,
    }
    if installation_id:
        body["installationId"] = installation_id
    if event != "installed":
        del body["sharedSecret"]
    return body


def key_server(keys: dict[str, bytes]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        kid = request.url.path.rsplit("/", 1)[-1]
        if kid in keys:
            return httpx.Response(200, content=keys[kid])
        return httpx.Response(404, text="not found")

    return httpx.MockTransport(handler)


@dataclass
class ConnectApp:
    app: Starlette
    client: httpx.AsyncClient
    settings: Settings
    install_key: InstallKey
    # When each site's last install was signed: a reinstall is signed a second later at
    # least, as Atlassian's would be (a token seen with one body is refused with another).
    signed_at: dict[str, int] = field(default_factory=dict)

    async def install(
        self, client_key: str | None = None, secret: str | None = None, **body: Any
    ) -> tuple[str, str]:
        client_key = client_key or f"ck-{uuid.uuid4()}"
        secret = secret or uuid.uuid4().hex + uuid.uuid4().hex
        # Each site its own base URL: a second clientKey on one site retires the first.
        body.setdefault("base_url", f"https://{client_key.lower()}.atlassian.net/wiki")
        now = max(int(time.time()), self.signed_at.get(client_key, 0) + 1)
        self.signed_at[client_key] = now
        token = self.install_key.sign(
            install_claims(
                client_key=client_key,
                method="POST",
                path="/connect/installed",
                aud=self.settings.base_url,
                now=now,
            )
        )
        resp = await self.client.post(
            "/connect/installed",
            json=install_body(client_key, secret, **body),
            headers={"Authorization": f"JWT {token}"},
        )
        assert resp.status_code == 204, resp.text
        return client_key, secret


def signed(app: ConnectApp, client_key: str, path: str, **overrides: Any) -> dict[str, str]:
    """Headers of a lifecycle callback to ``path`` signed with the install key (RS256)."""
    claims = install_claims(
        client_key=client_key, method="POST", path=path, aud=app.settings.base_url
    )
    claims.update(overrides)
    return {"Authorization": f"JWT {app.install_key.sign(claims)}"}


@pytest.fixture
async def connect_app(
    settings: Settings, redis: Redis, install_key: InstallKey
) -> AsyncIterator[ConnectApp]:
    """The app with its lifespan running, behind an ASGI transport; install keys are local."""
    app = create_app(settings, redis=redis)
    async with app.router.lifespan_context(app):
        keys_http = httpx.AsyncClient(
            transport=key_server({install_key.kid: install_key.public_pem})
        )
        app.state.install_keys = InstallKeys(keys_http, "https://keys.test", timeout=1.0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client:
            yield ConnectApp(app, client, settings, install_key)
        await keys_http.aclose()


Signer = Callable[..., str]
