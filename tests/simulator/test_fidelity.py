"""One test per fidelity rule of the issue: shapes, statuses, versions, states, pagination."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.simulator.conftest import basic, make_page

V2 = "/wiki/api/v2"
STORAGE = {"representation": "storage", "value": "<p>v2</p>"}


async def test_ids_are_strings_and_path_ids_must_be_numeric(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Ids")
    assert all(isinstance(page[k], str) for k in ("id", "spaceId", "parentId", "authorId"))
    assert isinstance(page["version"]["number"], int)
    bad = await client.get(f"{V2}/pages/abc")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "INVALID_REQUEST_PARAMETER"


async def test_version_object(client: httpx.AsyncClient, space: dict[str, Any]) -> None:
    page = await make_page(client, space["id"], "Versioned")
    version = page["version"]
    assert set(version) == {"createdAt", "message", "number", "minorEdit", "authorId"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", version["createdAt"])
    assert version["number"] == 1 and version["minorEdit"] is False


async def test_body_only_when_body_format_asks(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Bodies", "<p>one</p><p>two</p>")
    bare = (await client.get(f"{V2}/pages/{page['id']}")).json()
    assert bare["body"] == {}
    storage = (await client.get(f"{V2}/pages/{page['id']}?body-format=storage")).json()
    assert storage["body"] == {
        "storage": {"representation": "storage", "value": "<p>one</p><p>two</p>"}
    }
    adf = (await client.get(f"{V2}/pages/{page['id']}?body-format=atlas_doc_format")).json()
    value = adf["body"]["atlas_doc_format"]["value"]
    assert isinstance(value, str)
    doc = json.loads(value)
    assert doc["type"] == "doc"
    assert [p["content"][0]["text"] for p in doc["content"]] == ["one", "two"]
    listed = (await client.get(f"{V2}/pages")).json()["results"]
    assert all(item["body"] == {} for item in listed)


async def test_create_statuses_and_location(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    created = await client.post(
        f"{V2}/pages", json={"spaceId": space["id"], "title": "S", "body": STORAGE}
    )
    assert created.status_code == 200
    comment = await client.post(
        f"{V2}/footer-comments", json={"pageId": created.json()["id"], "body": STORAGE}
    )
    assert comment.status_code == 201
    again = await client.get(comment.headers["location"].removeprefix("https://site.test"))
    assert again.status_code == 200 and again.json()["id"] == comment.json()["id"]


async def test_put_requires_current_plus_one(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Edit me")

    async def put(number: int) -> httpx.Response:
        return await client.put(
            f"{V2}/pages/{page['id']}",
            json={
                "id": page["id"],
                "status": "current",
                "title": "Edit me",
                "body": STORAGE,
                "version": {"number": number, "message": "m"},
            },
        )

    ok = await put(2)
    assert ok.status_code == 200 and ok.json()["version"]["number"] == 2
    assert ok.json()["version"]["message"] == "m"
    for stale in (2, 1, 4):
        conflict = await put(stale)
        assert conflict.status_code == 409
        error = conflict.json()["errors"][0]
        assert error == {
            "status": 409,
            "code": "CONFLICT",
            "detail": None,
            "title": "Version must be incremented when updating a page. "
            f"Current Version: [2]. Provided version: [{stale}]",
        }
    missing = await client.put(
        f"{V2}/pages/{page['id']}", json={"id": page["id"], "status": "current", "title": "x"}
    )
    assert missing.status_code == 400


async def test_draft_lifecycle(client: httpx.AsyncClient, space: dict[str, Any]) -> None:
    draft = await client.post(
        f"{V2}/pages", json={"spaceId": space["id"], "status": "draft", "body": STORAGE}
    )
    assert draft.status_code == 200 and draft.json()["status"] == "draft"
    page_id = draft.json()["id"]
    listed = (await client.get(f"{V2}/pages")).json()["results"]
    assert page_id not in [p["id"] for p in listed]
    other = await client.post("/_sim/users", json={"email": "bob@example.com"})
    as_bob = {"Authorization": basic("bob@example.com", other.json()["apiToken"])}
    assert (await client.get(f"{V2}/pages/{page_id}", headers=as_bob)).status_code == 404
    publish = {
        "id": page_id,
        "status": "current",
        "title": "Now live",
        "body": STORAGE,
        "version": {"number": 2},
    }
    early = await client.put(f"{V2}/pages/{page_id}", json=publish)
    assert early.status_code == 409  # a first publish is version 1, and the error says so
    assert "must be 1 when publishing" in early.json()["errors"][0]["title"]
    published = await client.put(
        f"{V2}/pages/{page_id}", json={**publish, "version": {"number": 1}}
    )
    assert published.status_code == 200
    assert published.json()["status"] == "current" and published.json()["version"]["number"] == 1


async def test_trash_purge_and_restore(client: httpx.AsyncClient, space: dict[str, Any]) -> None:
    page = await make_page(client, space["id"], "Doomed")
    url = f"{V2}/pages/{page['id']}"
    assert (await client.delete(f"{url}?purge=true")).status_code == 400  # not trashed yet
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 404
    trashed = await client.get(f"{url}?status=trashed")
    assert trashed.status_code == 200 and trashed.json()["status"] == "trashed"
    restored = await client.put(
        url,
        json={
            "id": page["id"],
            "status": "current",
            "title": "Doomed",
            "body": STORAGE,
            "version": {"number": 2},
        },
    )
    assert restored.status_code == 200 and restored.json()["status"] == "current"
    assert restored.json()["version"]["number"] == 1  # restoring changes the status only
    assert (await client.delete(url)).status_code == 204
    assert (await client.delete(f"{url}?purge=true")).status_code == 204
    assert (await client.get(url)).status_code == 404
    assert (await client.get(f"{url}?status=deleted")).json()["status"] == "deleted"


async def test_cursor_pagination(client: httpx.AsyncClient, space: dict[str, Any]) -> None:
    for i in range(11):
        await make_page(client, space["id"], f"Page {i:02d}")
    for bad in ("0", "251", "x"):
        response = await client.get(f"{V2}/pages?limit={bad}")
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "INVALID_REQUEST_PARAMETER"
    seen: list[str] = []
    url: str | None = f"{V2}/spaces/{space['id']}/pages?limit=5&sort=title"
    while url:
        response = await client.get(url)
        assert response.status_code == 200
        data = response.json()
        seen += [p["title"] for p in data["results"]]
        assert data["_links"]["base"] == "https://site.test/wiki"
        url = data["_links"].get("next")
        if url:
            assert (
                url.startswith("/wiki/api/v2/spaces/") and "sort=title" in url and "limit=5" in url
            )
            assert url.split("?", 1)[1].startswith("cursor=") and "%" not in url.split("&")[0]
            assert (
                response.headers["link"]
                == f'<{url}>; rel="next", <https://site.test/wiki>; rel="base"'
            )
        else:
            assert "link" not in response.headers
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 12  # 11 + the homepage
    bad_cursor = await client.get(f"{V2}/pages?cursor=not-a-cursor")
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["errors"][0]["title"].startswith("Provided value for 'cursor'")


async def test_inserts_between_pages_do_not_repeat_items(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    for i in range(4):
        await make_page(client, space["id"], f"P{i}")
    first = (await client.get(f"{V2}/pages?limit=3")).json()
    await make_page(client, space["id"], "Late")
    second = (await client.get(first["_links"]["next"])).json()
    ids = [p["id"] for p in first["results"] + second["results"]]
    assert len(ids) == len(set(ids)) == 6


async def test_bad_parameters_get_the_errors_envelope(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Params")
    for query in ("body-format=html", "status=bogus", "include-labels=maybe", "sort=size"):
        url = f"{V2}/pages/{page['id']}?{query}" if "sort" not in query else f"{V2}/pages?{query}"
        response = await client.get(url)
        assert response.status_code == 400, query
        (error,) = response.json()["errors"]
        assert error["status"] == 400 and error["code"] == "INVALID_REQUEST_PARAMETER"


async def test_permissions_give_404_for_hidden_and_for_not_permitted(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Secret")
    reader = (await client.post("/_sim/users", json={"email": "r@example.com"})).json()
    outsider = (await client.post("/_sim/users", json={"email": "o@example.com"})).json()
    await client.put(
        "/_sim/spaces/DEV/permissions", json={"user": "r@example.com", "access": "read"}
    )
    await client.put(
        "/_sim/spaces/DEV/permissions", json={"user": "o@example.com", "access": "none"}
    )
    as_reader = {"Authorization": basic("r@example.com", reader["apiToken"])}
    as_outsider = {"Authorization": basic("o@example.com", outsider["apiToken"])}
    assert (await client.get(f"{V2}/pages/{page['id']}", headers=as_reader)).status_code == 200
    edit = {
        "id": page["id"],
        "status": "current",
        "title": "Secret",
        "body": STORAGE,
        "version": {"number": 2},
    }
    # v2 answers 404 to a write the caller may not make on what it may view (the spec's 404:
    # "does not have the needed permissions to update a page in the space"), not 403
    refused = await client.put(f"{V2}/pages/{page['id']}", json=edit, headers=as_reader)
    assert refused.status_code == 404 and refused.json()["errors"][0]["code"] == "NOT_FOUND"
    comment = {"pageId": page["id"], "body": STORAGE}
    no_comment = await client.post(f"{V2}/footer-comments", json=comment, headers=as_reader)
    assert no_comment.status_code == 404
    hidden = await client.get(f"{V2}/pages/{page['id']}", headers=as_outsider)
    assert hidden.status_code == 404
    assert (
        await client.get(f"{V2}/pages/{page['id']}/footer-comments", headers=as_outsider)
    ).status_code == 404
    listed = (await client.get(f"{V2}/pages", headers=as_outsider)).json()["results"]
    assert listed == []
    assert (await client.get(f"{V2}/spaces/{space['id']}", headers=as_outsider)).status_code == 404


async def test_page_comment_lists_hold_root_comments_only(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Talk")
    root = (
        await client.post(f"{V2}/footer-comments", json={"pageId": page["id"], "body": STORAGE})
    ).json()
    reply = await client.post(
        f"{V2}/footer-comments", json={"parentCommentId": root["id"], "body": STORAGE}
    )
    assert reply.status_code == 201 and reply.json()["parentCommentId"] == root["id"]
    both = await client.post(
        f"{V2}/footer-comments",
        json={"pageId": page["id"], "parentCommentId": root["id"], "body": STORAGE},
    )
    assert both.status_code == 400
    roots = (await client.get(f"{V2}/pages/{page['id']}/footer-comments")).json()["results"]
    assert [c["id"] for c in roots] == [root["id"]]
    children = (await client.get(f"{V2}/footer-comments/{root['id']}/children")).json()["results"]
    assert [c["id"] for c in children] == [reply.json()["id"]]
    assert (await client.delete(f"{V2}/footer-comments/{root['id']}")).status_code == 204
    assert (await client.get(f"{V2}/footer-comments/{root['id']}")).status_code == 404


async def test_inline_comment_anchoring(client: httpx.AsyncClient, space: dict[str, Any]) -> None:
    page = await make_page(client, space["id"], "Anchors", "<p>foo bar foo</p>")

    async def inline(count: int, index: int) -> httpx.Response:
        props = {
            "textSelection": "foo",
            "textSelectionMatchCount": count,
            "textSelectionMatchIndex": index,
        }
        return await client.post(
            f"{V2}/inline-comments",
            json={"pageId": page["id"], "body": STORAGE, "inlineCommentProperties": props},
        )

    assert (await inline(2, 1)).status_code == 201
    assert (await inline(2, 2)).status_code == 400
    assert (await inline(3, 0)).status_code == 400
    missing = await client.post(
        f"{V2}/inline-comments", json={"pageId": page["id"], "body": STORAGE}
    )
    assert missing.status_code == 400


async def test_v1_search_next_is_relative_to_base(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    for i in range(3):
        await make_page(client, space["id"], f"Guide {i}")
    first = await client.get(
        "/wiki/rest/api/search", params={"cql": 'title ~ "Guide" order by title', "limit": 2}
    )
    data = first.json()
    assert data["size"] == 2 and data["totalSize"] == 3 and data["start"] == 0
    assert data["_links"]["next"].startswith("/rest/api/search?")
    second = (await client.get("/wiki" + data["_links"]["next"])).json()
    assert [r["title"] for r in data["results"] + second["results"]] == [
        "Guide 0",
        "Guide 1",
        "Guide 2",
    ]
    assert "next" not in second["_links"]
    broken = await client.get("/wiki/rest/api/search", params={"cql": "title ~"})
    assert broken.status_code == 400


async def test_moving_a_page_emits_page_moved(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    from simulator.payloads import connect_payload

    sim = client._transport.app.state.sim  # type: ignore[attr-defined]
    a = await make_page(client, space["id"], "A")
    b = await make_page(client, space["id"], "B")
    seen: list[dict[str, Any]] = []
    sim.listeners.append(
        lambda e: seen.append(connect_payload(sim.store, "https://s/wiki", e) | {"_": e.name})
    )
    moved = await client.put(
        f"{V2}/pages/{b['id']}",
        json={
            "id": b["id"],
            "status": "current",
            "title": "B",
            "parentId": a["id"],
            "body": STORAGE,
            "version": {"number": 2},
        },
    )
    assert moved.status_code == 200 and moved.json()["parentId"] == a["id"]
    assert [s["_"] for s in seen] == ["page_updated", "page_moved"]
    assert seen[1]["oldParent"]["idAsString"] == b["parentId"]
    assert seen[1]["newParent"]["idAsString"] == a["id"]
    loop = await client.put(
        f"{V2}/pages/{a['id']}",
        json={
            "id": a["id"],
            "status": "current",
            "title": "A",
            "parentId": b["id"],
            "body": STORAGE,
            "version": {"number": 2},
        },
    )
    assert loop.status_code == 400


async def test_a_draft_of_published_content_sits_beside_it(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Live")
    url = f"{V2}/pages/{page['id']}"
    draft = {"id": page["id"], "status": "draft", "title": "Live (draft)", "body": STORAGE}
    assert (await client.put(url, json=draft | {"version": {"number": 2}})).status_code == 409
    saved = await client.put(url, json=draft | {"version": {"number": 1}})
    assert saved.status_code == 200 and saved.json()["status"] == "draft"
    live = (await client.get(url)).json()
    assert live["title"] == "Live" and live["version"]["number"] == 1
    pending = (await client.get(f"{url}?get-draft=true")).json()
    assert pending["title"] == "Live (draft)" and pending["status"] == "draft"


async def test_bodies_that_are_not_json_are_415(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    page = await make_page(client, space["id"], "Typed")
    body = {
        "id": page["id"],
        "status": "current",
        "title": "Typed",
        "body": STORAGE,
        "version": {"number": 2},
    }
    plain = await client.put(
        f"{V2}/pages/{page['id']}",
        content=json.dumps(body),
        headers={"Content-Type": "text/plain"},
    )
    assert plain.status_code == 415
    assert plain.json()["errors"][0]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    ok = await client.put(f"{V2}/pages/{page['id']}", json=body)
    assert ok.status_code == 200


async def test_every_single_body_format_of_the_spec_is_accepted(
    client: httpx.AsyncClient, space: dict[str, Any]
) -> None:
    """``PrimaryBodyRepresentationSingle``: what a single page read may ask for."""
    page = await make_page(client, space["id"], "Formats")
    formats = ("storage", "atlas_doc_format", "view", "export_view", "anonymous_export_view")
    for wanted in (*formats, "styled_view", "editor"):
        read = await client.get(f"{V2}/pages/{page['id']}", params={"body-format": wanted})
        assert read.status_code == 200, (wanted, read.text)
        assert read.json()["body"][wanted]["representation"] == wanted
    bogus = await client.get(f"{V2}/pages/{page['id']}", params={"body-format": "wiki"})
    assert bogus.status_code == 400
