"""CQL subset (pure), search over a site, state save/load, and the ``reactor sim`` command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import build_parser
from app.confluence.errors import parse_error_body
from app.confluence.models import SearchResult
from simulator.cql import CqlError, parse
from simulator.site import build
from simulator.store import Store
from tests.simulator.conftest import TOKEN, make_page

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def _doc(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "1",
        "type": "page",
        "space": "DEV",
        "title": "Release notes",
        "text": "Ship it",
        "label": ["howto", "ops"],
        "creator": "u1",
        "contributor": ["u1"],
        "created": datetime(2026, 6, 1, tzinfo=UTC),
        "lastmodified": datetime(2026, 6, 9, tzinfo=UTC),
        "parent": "10",
        "ancestor": ["10", "5"],
    }
    doc.update(kw)
    return doc


@pytest.mark.parametrize(
    ("cql", "expected"),
    [
        ("type = page", True),
        ("type = blogpost", False),
        ('space = "DEV" and title ~ "release"', True),
        ("space in (OPS, DEV)", True),
        ("space not in (OPS, DEV)", False),
        ('text ~ "ship"', True),
        ("label = howto AND NOT label = secret", True),
        ("label = secret OR (creator = u1 AND parent = 10)", True),
        ("ancestor = 5", True),
        ('created >= "2026-06-01" and created < "2026/06/02"', True),
        ('lastmodified > now("-2d")', True),
        ('lastmodified > now("-12h")', False),
        ("creator = currentUser()", True),
        ('title !~ "notes"', False),
        ("type = page order by lastmodified desc, title", True),
    ],
)
def test_cql_matches(cql: str, expected: bool) -> None:
    assert parse(cql, now=NOW, current_user="u1").match(_doc()) is expected


@pytest.mark.parametrize(
    "cql",
    [
        "",
        "title ~",
        "size = 3",
        "type = page order by bogus",
        "created > yesterday",
        "(type = page",
        'title = "x" junk',
    ],
)
def test_cql_errors(cql: str) -> None:
    with pytest.raises(CqlError):
        parse(cql, now=NOW).match(_doc())


def test_cql_order_by() -> None:
    query = parse("type = page order by title desc, created", now=NOW)
    assert query.order == [("title", True), ("created", False)]


async def test_search_over_the_site(client: httpx.AsyncClient, space: dict[str, Any]) -> None:
    parent = await make_page(client, space["id"], "Runbook", "<p>restart the queue</p>")
    await make_page(client, space["id"], "Child step", "<p>drain</p>", parentId=parent["id"])
    await client.post(
        "/_sim/act/labels",
        json={"as": "admin@example.com", "contentId": parent["id"], "name": "ops"},
    )
    found = await client.get("/wiki/rest/api/search", params={"cql": f"ancestor = {parent['id']}"})
    assert [r["title"] for r in found.json()["results"]] == ["Child step"]
    labelled = (
        await client.get("/wiki/rest/api/search", params={"cql": 'label = ops and text ~ "queue"'})
    ).json()
    assert labelled["totalSize"] == 1 and labelled["results"][0]["content"]["id"] == parent["id"]
    assert labelled["cqlQuery"] == 'label = ops and text ~ "queue"'
    users = (
        await client.get(
            "/wiki/rest/api/search/user", params={"cql": 'type=user and user.fullname~"admin"'}
        )
    ).json()
    assert [u["user"]["displayName"] for u in users["results"]] == ["Site Admin"]
    no_type = await client.get("/wiki/rest/api/search/user", params={"cql": 'user.fullname~"a"'})
    assert no_type.status_code == 400
    # v1 routes answer in v1's error shape, which the app's client reads too
    error = no_type.json()
    assert error["statusCode"] == 400 and "errors" not in error
    assert error["message"].startswith(
        "com.atlassian.confluence.api.service.exceptions.BadRequestException: User search"
    )
    (item,) = parse_error_body(no_type.text)
    assert item.status == 400 and "User search needs type=user" in (item.title or "")


async def test_search_expands_what_is_asked_and_lists_the_rest(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Expand me", "<p>first</p>")
    await client.post(
        "/_sim/act/labels",
        json={"as": "admin@example.com", "contentId": page["id"], "name": "ops"},
    )
    cql = {"cql": 'title ~ "Expand me"'}
    plain = (await client.get("/wiki/rest/api/search", params=cql)).json()["results"][0]
    assert "version" not in plain["content"] and "space" not in plain["content"]
    assert {"version", "space", "body"} <= set(plain["content"]["_expandable"])
    expand = "content.version,content.space,content.body.storage,content.metadata.labels,nope"
    hit = (await client.get("/wiki/rest/api/search", params={**cql, "expand": expand})).json()[
        "results"
    ][0]["content"]
    assert hit["version"]["number"] == 1 and hit["version"]["by"]["accountId"]
    assert hit["space"]["key"] == space["key"]
    assert hit["body"]["storage"] == {"value": "<p>first</p>", "representation": "storage"}
    assert [lb["name"] for lb in hit["metadata"]["labels"]["results"]] == ["ops"]
    assert "version" not in hit["_expandable"] and "history" in hit["_expandable"]
    assert SearchResult.from_json({"content": hit}).space_key == space["key"]


async def test_state_round_trips_through_json(
    client: httpx.AsyncClient, space: dict[str, Any], tmp_path: Path, keys: Any
) -> None:
    page = await make_page(client, space["id"], "Keep me")
    await client.put(
        f"/wiki/api/v2/pages/{page['id']}",
        json={
            "id": page["id"],
            "status": "current",
            "title": "Kept",
            "version": {"number": 2},
            "body": {"representation": "storage", "value": "<p>v2</p>"},
        },
    )
    sim = client._transport.app.state.sim  # type: ignore[attr-defined]
    path = tmp_path / "site.json"
    sim.store.save(path)
    assert path.stat().st_mode & 0o777 == 0o600, "it holds API tokens and shared secrets"
    loaded = Store.load(path)
    assert loaded.to_json() == sim.store.to_json()
    again = build(state_path=path, keys=keys, api_token=TOKEN)
    assert again.store.contents[page["id"]].current.title == "Kept"
    assert [r.number for r in again.store.contents[page["id"]].revisions] == [1, 2]


def test_reactor_sim_command_is_registered() -> None:
    args = build_parser().parse_args(
        ["sim", "--port", "9001", "--api-token", "abc", "--time-scale", "60"]
    )
    assert (args.port, args.api_token, args.time_scale) == (9001, "abc", 60.0)
    assert args.handler.__name__ == "cmd_sim"


def test_reactor_sim_runs_standalone(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from app.embedded_redis import free_port
    from tests.simulator.conftest import basic

    port = free_port()
    state = tmp_path / "site.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "sim",
            "--port",
            str(port),
            "--api-token",
            "standalone",
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/_sim/spaces", json={"key": "S", "name": "S"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert response.status_code == 201
        spaces = httpx.get(
            f"http://127.0.0.1:{port}/wiki/api/v2/spaces",
            headers={"Authorization": basic(token="standalone")},
        )
        assert spaces.status_code == 200 and spaces.json()["results"][0]["key"] == "S"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert "admin@example.com" in output and "standalone" in output
    assert "S" in {s["key"] for s in Store.load(state).to_json()["spaces"].values()}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"cloud_id": "c1", ', "invalid JSON: Expecting property name"),
        ("[]", "not a JSON object"),
        ('{"cloud_id": "c1"}', "missing 'next_id'"),
    ],
)
def test_reactor_sim_refuses_a_state_file_it_cannot_read(
    tmp_path: Path, content: str, problem: str
) -> None:
    """One line on stderr and exit 2, before anything is served; the file is left as it is."""
    import subprocess
    import sys

    from app.embedded_redis import free_port

    state = tmp_path / "site.json"
    state.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "sim", "--state", str(state), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"reactor sim: --state: {state} is not a simulator state file")
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert state.read_text() == content
