"""Key servers down, at process level: the web process answers 503 (retry later), never 401.

A Connect install whose signing key cannot be fetched (the key server refuses connections)
and a Forge event whose JWKS cannot be fetched (the host accepts connections and never
answers) are refused with 503 and ``Retry-After`` within the configured bounds: Atlassian
retries, where a 401 would have dropped the install or the event for good.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from app.embedded_redis import free_port
from tests.connect.conftest import InstallKey, install_body, install_claims
from tests.forge.conftest import APP_ID, FORGE_FIXTURES, SigningKey, mint
from tests.scale.harness import StackFactory


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.mark.timeout(40)
async def test_install_key_and_jwks_servers_down_answer_503(
    make_stack: StackFactory, black_hole: int
) -> None:
    stack = make_stack(
        workers=0,
        env={
            "REACTOR_CONNECT_INSTALL_KEYS_URL": f"http://127.0.0.1:{free_port()}",
            "REACTOR_CONNECT_INSTALL_KEYS_TIMEOUT_SECONDS": "1",
            "REACTOR_FORGE_APP_ID": APP_ID,
            "REACTOR_FORGE_JWKS_URL": f"http://127.0.0.1:{black_hole}/jwks.json",
            "REACTOR_INGEST_TIMEOUT_SECONDS": "1",
        },
    )
    key = InstallKey(SigningKey().private, "install-key-1")
    token = key.sign(
        install_claims(
            client_key="ck-down", method="POST", path="/connect/installed", aud=stack.base_url
        )
    )
    event = json.loads((FORGE_FIXTURES / "events" / "page-created.json").read_text())
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        started = time.monotonic()
        install = await http.post(
            "/connect/installed",
            json=install_body("ck-down", "s" * 32),
            headers={"Authorization": f"JWT {token}"},
        )
        forge = await http.post(
            "/forge/events", json=event, headers={"Authorization": f"Bearer {mint(SigningKey())}"}
        )
        elapsed = time.monotonic() - started
    assert (install.status_code, install.json()["error"]) == (503, "install_keys_unavailable")
    assert (forge.status_code, forge.json()["error"]) == (503, "jwks_unavailable")
    assert int(install.headers["retry-after"]) > 0 and int(forge.headers["retry-after"]) > 0
    assert elapsed < 5, "bounded by the configured timeouts"
