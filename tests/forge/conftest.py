"""Forge test kit: RSA keys made per run, a JWKS server on a real socket, token minting."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.settings import Settings
from tests.conftest import FIXTURES, LiveServer

FORGE_FIXTURES: Path = FIXTURES / "forge"
APP_ID = "ari:cloud:ecosystem::app/8db33809-5d51-4b6f-a8b2-2a1b0c4f1e11"
INSTALLATION_UUID = "f3f1c6a8-2f52-4d1a-9a77-51c2e3d0b9aa"
INSTALLATION_ID = f"ari:cloud:ecosystem::installation/{INSTALLATION_UUID}"
CLOUD_ID = "a436116f-02ce-4520-8fbb-7301462a1674"
API_BASE_URL = f"https://api.atlassian.com/ex/confluence/{CLOUD_ID}"


class SigningKey:
    """An RSA key pair with a ``kid``, as a JWKS host would publish it."""

    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or f"forge/{uuid.uuid4().hex[:12]}"
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, alg="RS256", use="sig")
        return data


def fit_claims(now: float | None = None, **overrides: Any) -> dict[str, Any]:
    """Claims of a Forge Invocation Token for an event trigger (Remote essentials shape)."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": "forge/invocation-token",
        "aud": APP_ID,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 25,
        "jti": uuid.uuid4().hex,
        "app": {
            "installationId": INSTALLATION_ID,
            "apiBaseUrl": API_BASE_URL,
            "id": APP_ID,
            "appVersion": "2.0.0",
            "environment": {
                "type": "PRODUCTION",
                "id": "ari:cloud:ecosystem::environment/8db33809/0f1b3c55",
            },
            "module": {"type": "core:endpoint", "key": "ep-events"},
            "installation": {
                "id": INSTALLATION_ID,
                "contexts": [
                    {"name": "confluence", "apiBaseUrl": API_BASE_URL, "cloudId": CLOUD_ID}
                ],
            },
            "license": {"active": True, "isEvaluation": False},
        },
    }
    claims.update(overrides)
    return claims


# The endpoint module (manifest.yml) Forge names in the token of a call to each route.
ENDPOINTS = {
    "/forge/events": "ep-events",
    "/forge/lifecycle": "ep-lifecycle",
    "/forge/token-refresh": "ep-token-refresh",
    "/forge/pre-uninstall": "ep-pre-uninstall",
}


def mint(
    key: SigningKey,
    claims: dict[str, Any] | None = None,
    *,
    kid: str | None = None,
    route: str | None = None,
) -> str:
    """A signed FIT; ``route``: as Forge signs it for that route's endpoint module."""
    claims = claims or fit_claims()
    if route is not None:
        claims["app"]["module"]["key"] = ENDPOINTS[route]
    return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": kid or key.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_unsigned(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand: ``alg: none`` (no secret) or HS256 with ``secret`` (key confusion)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def system_token(exp: float) -> str:
    """Stands in for an app system token: a JWT whose ``exp`` the service reads."""
    return jwt.encode({"exp": int(exp), "sub": "app"}, "not-atlassians-key-" + "x" * 16)


class JwksHost:
    """A JWKS endpoint on a real socket whose keys and health the test controls."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.hits = 0
        self.status = 200
        self.delay = 0.0
        self.trickle = 0.0  # seconds between 64-byte pieces of the answer (0: all at once)
        self.padding = 0  # bytes of whitespace after the JSON
        self.document: bytes | None = None  # served as it is instead of the keys, when set

        async def jwks(request: Request) -> Response:
            self.hits += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.status != 200:
                return Response("unavailable", status_code=self.status)
            body = self.document
            if body is None:
                body = json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()
            body += b" " * self.padding
            if not self.trickle:
                return Response(body, media_type="application/json")

            async def pieces() -> AsyncIterator[bytes]:
                for start in range(0, len(body), 64):
                    await asyncio.sleep(self.trickle)
                    yield body[start : start + 64]

            return StreamingResponse(pieces(), media_type="application/json")

        self.server = LiveServer(Starlette(routes=[Route("/.well-known/jwks.json", jwks)]))
        self.url = f"{self.server.url}/.well-known/jwks.json"


@pytest.fixture(scope="session")
def keys() -> list[SigningKey]:
    return [SigningKey() for _ in range(3)]


@pytest.fixture
def jwks_host(keys: list[SigningKey]) -> Iterator[JwksHost]:
    host = JwksHost()
    host.keys = [keys[0]]
    host.server.start()
    yield host
    host.server.stop()


@pytest.fixture
def forge_settings(settings: Settings, jwks_host: JwksHost) -> Settings:
    return settings.model_copy(update={"forge_app_id": APP_ID, "forge_jwks_url": jwks_host.url})


@pytest.fixture
def fixture_json() -> Callable[[str], dict[str, Any]]:
    def load(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((FORGE_FIXTURES / name).read_text())
        return data

    return load


class SlowRedis:
    """A TCP proxy in front of a Redis that holds each of its replies ``delay`` seconds (a Redis
    slow to answer, each reply on its own well within a per-call bound). Runs on the test's
    event loop: ``async with SlowRedis(url) as slow``, then point ``redis_url`` at ``slow.url``."""

    def __init__(self, target_url: str) -> None:
        self.target = urlsplit(target_url)
        self.delay = 0.0
        self.port = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SlowRedis:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = self.target._replace(netloc=f"127.0.0.1:{self.port}").geturl()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host, port = self.target.hostname or "127.0.0.1", self.target.port or 6379
        upstream_r, upstream_w = await asyncio.open_connection(host, port)
        self._writers += [client_w, upstream_w]
        await asyncio.gather(
            self._pipe(client_r, upstream_w, slow=False),
            self._pipe(upstream_r, client_w, slow=True),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slow: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
