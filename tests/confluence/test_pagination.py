"""Cursor pagination: Link parsing, joining next links to the right root, long walks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.confluence import ConfluenceClient, Site
from app.confluence.errors import InvalidResponse
from app.confluence.pagination import check_limit, next_link, parse_link_header, resolve_next
from tests.confluence.conftest import RecordingBudget, basic_site
from tests.confluence.fake import FakeConfluence

LINKS = json.loads(
    (Path(__file__).parents[1] / "fixtures/confluence/link-headers.json").read_text()
)
GATEWAY = "https://api.atlassian.com/ex/confluence/0f1e2d3c-aaaa-bbbb-cccc-000000000001"


@pytest.mark.parametrize("case", LINKS, ids=[c["name"] for c in LINKS])
def test_recorded_next_links(case: dict[str, Any]) -> None:
    body = {"_links": {"base": "https://acme.atlassian.net/wiki", "next": case.get("body_next")}}
    link = next_link(case.get("link"), body if "body_next" in case else {"_links": {}})
    assert link is not None
    assert resolve_next(case["api_root"], "/wiki", link) == case["expect"]


def test_link_header_with_several_relations_and_params() -> None:
    header = (
        '<https://x/wiki>; rel="base", '
        '</wiki/api/v2/pages?cursor=a%2Cb=&limit=5>; title="n"; rel="next"'
    )
    assert parse_link_header(header) == {
        "base": "https://x/wiki",
        "next": "/wiki/api/v2/pages?cursor=a%2Cb=&limit=5",
    }
    assert parse_link_header("") == {} and parse_link_header(None) == {}


def test_end_of_list() -> None:
    assert next_link(None, {"results": [], "_links": {"base": "https://x/wiki"}}) is None
    assert next_link('<https://x/wiki>; rel="base"', {"_links": {}}) is None


def test_never_base_and_never_off_site() -> None:
    # Joining to _links.base would give /wiki/wiki/...; we join to the API root.
    assert resolve_next("https://x.net", "/wiki", "/wiki/api/v2/pages?cursor=c") == (
        "https://x.net/wiki/api/v2/pages?cursor=c"
    )
    # An absolute link to another host keeps only its path: credentials stay home.
    assert resolve_next("https://x.net", "/wiki", "https://evil.test/wiki/api/v2/p?cursor=c") == (
        "https://x.net/wiki/api/v2/p?cursor=c"
    )
    assert resolve_next(GATEWAY, "/wiki", f"{GATEWAY}/wiki/api/v2/p?cursor=c") == (
        f"{GATEWAY}/wiki/api/v2/p?cursor=c"
    )
    # A gateway-relative link is not given the prefix twice.
    prefix = GATEWAY.removeprefix("https://api.atlassian.com")
    assert resolve_next(GATEWAY, "/wiki", f"{prefix}/wiki/api/v2/p?cursor=c") == (
        f"{GATEWAY}/wiki/api/v2/p?cursor=c"
    )


def test_limits() -> None:
    assert check_limit(250) == 250
    for bad in (0, 251):
        with pytest.raises(ValueError):
            check_limit(bad)


async def test_walks_thousands_of_pages_through_the_gateway(budget: RecordingBudget) -> None:
    fake = FakeConfluence(api_root=GATEWAY)
    space = fake.add_space("BIG")
    for n in range(2999):
        fake.add_content(space["id"], f"Page {n}", "")
    expected = [c["id"] for c in fake.content.values() if c["kind"] == "page"]

    async def token() -> str:
        return "system-token"

    site = Site.forge(tenant="forge:cloud", api_base_url=GATEWAY, token=token)
    async with httpx.AsyncClient(transport=fake.transport) as http:
        client = ConfluenceClient(http, site, budget)
        seen = [p.id async for p in client.iter_space_pages(space["id"], limit=250)]
    assert seen == expected and len(seen) == 3000
    assert len(fake.requests) == 12
    followed = fake.requests[1:]
    assert all(str(r.url).startswith(f"{GATEWAY}/wiki/api/v2/spaces/") for r in followed)
    assert all(r.url.params["limit"] == "250" for r in fake.requests)
    assert [o.actual_cost for o in budget.observations] == [251] * 12
    assert all(cost == 251 for _, cost, _ in budget.reserved)


async def test_v1_search_walks_its_own_next_links(
    client: ConfluenceClient, fake: FakeConfluence
) -> None:
    space = fake.add_space("S")
    for n in range(1499):
        fake.add_content(space["id"], f"Doc {n}", "")
    hits = [h.content_id async for h in client.search("type=page", limit=100)]
    assert len(hits) == 1500 and len(set(hits)) == 1500
    assert len(fake.requests) == 15
    assert all(r.url.path == "/wiki/rest/api/search" for r in fake.requests)
    assert all("cursor" in r.url.params for r in fake.requests[1:])


async def test_a_looping_next_link_is_refused(budget: RecordingBudget) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"results": [{"id": "1", "name": "l", "prefix": "global"}], "_links": {}},
            headers={"Link": '</wiki/api/v2/labels?cursor=same>; rel="next"'},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ConfluenceClient(http, basic_site(), budget)
        with pytest.raises(InvalidResponse):
            _ = [label async for label in client.iter_labels()]
    assert len(budget.settled) == 2  # the second answer points back at itself


@pytest.mark.parametrize(
    "query",
    [
        "cursor=ab+c/d==&limit=2",
        "limit=2&cursor=eyJpZCI6IjMwMjczNyJ9&depth=all",
        "cursor=a%2Bb%3D%3D&limit=2&status=current,archived",
    ],
)
async def test_next_link_is_followed_byte_for_byte(budget: RecordingBudget, query: str) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        headers = {} if len(seen) > 1 else {"Link": f'</wiki/api/v2/labels?{query}>; rel="next"'}
        return httpx.Response(200, json={"results": [], "_links": {}}, headers=headers)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ConfluenceClient(http, basic_site(), budget)
        _ = [label async for label in client.iter_labels(limit=2)]
    assert seen == [b"/wiki/api/v2/labels?limit=2", f"/wiki/api/v2/labels?{query}".encode()]
