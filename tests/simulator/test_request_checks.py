"""Requests checked as the spec types them: version numbers, reply parents, numeric
parameters and ids, list sizes, v1 search limits."""

from __future__ import annotations

from typing import Any

import httpx

from tests.simulator.conftest import make_page

V2 = "/wiki/api/v2"
STORAGE = {"representation": "storage", "value": "<p>edited</p>"}
SELECTION = {
    "textSelection": "hello",
    "textSelectionMatchCount": 1,
    "textSelectionMatchIndex": 0,
}


async def _comments(client: httpx.AsyncClient, page_id: str) -> dict[str, dict[str, Any]]:
    footer = await client.post(f"{V2}/footer-comments", json={"pageId": page_id, "body": STORAGE})
    inline = await client.post(
        f"{V2}/inline-comments",
        json={"pageId": page_id, "body": STORAGE, "inlineCommentProperties": SELECTION},
    )
    assert footer.status_code == inline.status_code == 201, (footer.text, inline.text)
    return {"footer": footer.json(), "inline": inline.json()}


async def test_a_comment_version_number_must_be_an_integer(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Versions")
    for kind, made in (await _comments(client, page["id"])).items():
        url = f"{V2}/{kind}-comments/{made['id']}"
        for number in (2.0, "2", True):
            edit = await client.put(url, json={"version": {"number": number}, "body": STORAGE})
            assert edit.status_code == 400, (kind, number, edit.text)
            assert edit.json()["errors"][0]["title"] == "version.number must be an integer."
        kept = (await client.get(url)).json()["version"]["number"]
        assert kept == 1 and isinstance(kept, int)
        ok = await client.put(url, json={"version": {"number": 2}, "body": STORAGE})
        assert ok.status_code == 200 and ok.json()["version"]["number"] == 2


async def test_a_version_without_a_number_is_400_not_a_conflict(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Numberless")
    for status in ("current", "draft"):
        put = await client.put(
            f"{V2}/pages/{page['id']}",
            json={
                "id": page["id"],
                "status": status,
                "title": "Numberless",
                "body": STORAGE,
                "version": {"message": "no number"},
            },
        )
        assert put.status_code == 400, (status, put.text)
        assert put.json()["errors"][0] == {
            "status": 400,
            "code": "INVALID_MESSAGE",
            "title": "Missing required field(s): version.number.",
            "detail": None,
        }
    for kind, made in (await _comments(client, page["id"])).items():
        edit = await client.put(
            f"{V2}/{kind}-comments/{made['id']}", json={"version": {}, "body": STORAGE}
        )
        assert edit.status_code == 400, (kind, edit.text)
    got = (await client.get(f"{V2}/pages/{page['id']}")).json()
    assert got["version"]["number"] == 1


async def test_a_reply_s_parent_must_be_a_comment_of_its_own_kind(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Threads")
    made = await _comments(client, page["id"])
    for kind, other in (("inline", "footer"), ("footer", "inline")):
        parent = made[other]["id"]
        crossed = await client.post(
            f"{V2}/{kind}-comments", json={"parentCommentId": parent, "body": STORAGE}
        )
        assert crossed.status_code == 404, (kind, crossed.text)
        assert crossed.json()["errors"][0]["code"] == "NOT_FOUND"
        listed = (await client.get(f"{V2}/{other}-comments/{parent}/children")).json()
        assert listed["results"] == []
        same = await client.post(
            f"{V2}/{other}-comments", json={"parentCommentId": parent, "body": STORAGE}
        )
        assert same.status_code == 201, same.text
        listed = (await client.get(f"{V2}/{other}-comments/{parent}/children")).json()
        assert [c["id"] for c in listed["results"]] == [same.json()["id"]]
    everything = (await client.get(f"{V2}/footer-comments")).json()["results"]
    everything += (await client.get(f"{V2}/inline-comments")).json()["results"]
    assert len(everything) == 4


async def test_an_admin_reply_takes_its_parent_s_kind(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Admin threads")
    made = await _comments(client, page["id"])
    for kind in ("footer", "inline"):
        reply = await client.post(
            "/_sim/act/comments",
            json={"as": "admin@example.com", "parentCommentId": made[kind]["id"], "body": "ok"},
        )
        assert reply.status_code == 201, reply.text
        listed = (await client.get(f"{V2}/{kind}-comments/{made[kind]['id']}/children")).json()
        assert [c["id"] for c in listed["results"]] == [reply.json()["id"]]


LOOSE_INTEGERS = ("1_0", "+2", " 2", "2 ", "2.0", "\u0661", "\u00b2", "0x10")


async def test_numbers_in_queries_are_ascii_integers(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Numbers")
    for raw in LOOSE_INTEGERS:
        for url, name in (
            (f"{V2}/pages", "limit"),
            (f"{V2}/pages/{page['id']}", "version"),
            (f"{V2}/spaces", "limit"),
        ):
            got = await client.get(url, params={name: raw})
            assert got.status_code == 400, (url, name, raw, got.text)
            assert got.json()["errors"][0]["code"] == "INVALID_REQUEST_PARAMETER"
        v1 = await client.get("/wiki/rest/api/search", params={"cql": "type=page", "limit": raw})
        assert v1.status_code == 400 and v1.json()["statusCode"] == 400, (raw, v1.text)
    assert (await client.get(f"{V2}/pages", params={"limit": "010"})).status_code == 200
    assert (await client.get(f"{V2}/pages/{page['id']}", params={"version": "1"})).is_success


async def test_ids_are_int64_in_ascii_digits(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Ids")
    too_big = str(2**63)
    for raw in (*LOOSE_INTEGERS, "\u0661\u0662", "-1", too_big):
        for url in (
            f"{V2}/pages/{raw}",
            f"{V2}/spaces/{raw}",
            f"{V2}/footer-comments/{raw}",
            *((f"{V2}/attachments/att{raw}",) if raw != too_big else ()),
        ):
            got = await client.get(url)
            assert got.status_code == 400, (url, got.text)
            assert got.json()["errors"][0]["code"] == "INVALID_REQUEST_PARAMETER"
        for url, name in (
            (f"{V2}/pages", "id"),
            (f"{V2}/spaces", "ids"),
            (f"{V2}/labels", "label-id"),
        ):
            got = await client.get(url, params={name: f"{page['id']},{raw}"})
            assert got.status_code == 400, (url, name, raw, got.text)
    assert (await client.get(f"{V2}/pages/{2**63 - 1}")).status_code == 404
    # an int64 written with leading zeros names the same page, in the path and in filters
    padded = await client.get(f"{V2}/pages/00{page['id']}")
    assert padded.status_code == 200 and padded.json()["id"] == page["id"]
    listed = (await client.get(f"{V2}/pages", params={"id": f"0{page['id']}"})).json()
    assert [p["id"] for p in listed["results"]] == [page["id"]]
    put = await client.put(
        f"{V2}/pages/00{page['id']}",
        json={
            "id": page["id"],
            "status": "current",
            "title": "Ids",
            "body": STORAGE,
            "version": {"number": 2},
        },
    )
    assert put.status_code == 200, put.text


async def test_id_list_filters_hold_at_most_the_spec_s_max_items(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    def many(n: int) -> str:
        return ",".join(str(70000 + i) for i in range(n))

    for url, name, most in (
        (f"{V2}/pages", "id", 250),
        (f"{V2}/pages", "space-id", 100),
        (f"{V2}/blogposts", "id", 250),
        (f"{V2}/blogposts", "space-id", 100),
        (f"{V2}/spaces", "ids", 250),
    ):
        assert (await client.get(url, params={name: many(most)})).status_code == 200
        over = await client.get(url, params={name: many(most + 1)})
        assert over.status_code == 400, (url, name, over.text)
        assert over.json()["errors"][0]["code"] == "INVALID_REQUEST_PARAMETER"
    # repeated parameters count as well as comma-separated ones
    repeated = [("space-id", str(70000 + i)) for i in range(101)]
    assert (await client.get(f"{V2}/pages", params=repeated)).status_code == 400
    keys = ",".join(f"K{i}" for i in range(250))
    assert (await client.get(f"{V2}/spaces", params={"keys": keys})).status_code == 200
    over = await client.get(f"{V2}/spaces", params={"keys": keys + ",DEV"})
    assert over.status_code == 400, over.text


async def test_v1_search_caps_a_large_limit_instead_of_refusing_it(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    burst = {"GET": 10_000, "POST": 10_000, "PUT": 10_000, "DELETE": 10_000}
    assert (await client.put("/_sim/ratelimit", json={"burst": burst})).is_success
    for i in range(52):
        await make_page(client, space["id"], f"Bulk {i:02}")

    async def search(limit: Any, expand: str | None = None) -> httpx.Response:
        params = {"cql": 'title ~ "Bulk" order by title', "limit": limit}
        if expand:
            params["expand"] = expand
        return await client.get("/wiki/rest/api/search", params=params)

    for limit, expand, shown, size in (
        (251, None, 251, 52),
        (5000, None, 1000, 52),
        (1000, "content.space", 200, 52),
        (1000, "content.body.storage", 50, 50),
        (30, "content.space,content.body.export_view", 25, 25),
        (10, "content.body.storage", 10, 10),
    ):
        got = await search(limit, expand)
        assert got.status_code == 200, (limit, expand, got.text)
        data = got.json()
        assert (data["limit"], data["size"], data["totalSize"]) == (shown, size, 52), expand
        assert ("next" in data["_links"]) == (size < 52)
    nothing = await search(0)
    assert nothing.status_code == 200, nothing.text
    data = nothing.json()
    assert (data["limit"], data["size"], data["totalSize"]) == (0, 0, 52)
    assert "next" not in data["_links"]
    for bad in (-1, 2**31):
        refused = await search(bad)
        assert refused.status_code == 400 and refused.json()["statusCode"] == 400
