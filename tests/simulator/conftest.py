"""Fixtures of the simulator tests: a fresh site, an in-process client, schema validation."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from simulator.keys import KeyPair
from simulator.main import create_app
from simulator.site import Simulator, build

TOKEN = "sim-test-token"
SPEC = Path(__file__).parents[2] / "simulator" / "schemas" / "confluence-v2-subset.json"


def basic(email: str = "admin@example.com", token: str = TOKEN) -> str:
    return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()


@pytest.fixture(scope="session")
def keys() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate("sim-install"), KeyPair.generate("sim-forge")


@pytest.fixture
def sim(keys: tuple[KeyPair, KeyPair]) -> Simulator:
    return build(api_token=TOKEN, seed=7, keys=keys)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sim)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://site.test",
        headers={"Authorization": basic()},
    ) as c:
        yield c


@pytest.fixture
async def space(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/_sim/spaces", json={"key": "DEV", "name": "Development"})
    assert response.status_code == 201
    data: dict[str, Any] = response.json()
    return data


async def make_page(
    client: httpx.AsyncClient, space_id: str, title: str, value: str = "<p>hello</p>", **extra: Any
) -> dict[str, Any]:
    body = {
        "spaceId": space_id,
        "title": title,
        "body": {"representation": "storage", "value": value},
    }
    body.update(extra)
    response = await client.post("/wiki/api/v2/pages", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` as JSON Schema: add ``null`` to the type."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and isinstance(node.get("type"), str):
            out["type"] = [node["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SPEC.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def conforms(spec: dict[str, Any]) -> Callable[[str, httpx.Response], None]:
    """``conforms("GET /pages/{id}", response)``: status and body match the official schema."""
    components = _nullable(spec["components"])

    def check(operation: str, response: httpx.Response) -> None:
        entry = spec["operations"][operation]
        assert response.status_code == entry["status"], (operation, response.text)
        if "schema" not in entry:
            assert response.content == b""
            return
        schema = {**_nullable(entry["schema"]), "components": components}
        jsonschema.Draft7Validator(schema).validate(response.json())
        for header in entry.get("headers", []):
            if header.lower() == "location":
                assert response.headers.get("location"), operation

    return check
