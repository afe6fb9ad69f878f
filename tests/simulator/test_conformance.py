"""Every operation the simulator serves, validated against Atlassian's OpenAPI schemas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from simulator.site import Simulator
from tests.simulator.conftest import make_page

Conforms = Callable[[str, httpx.Response], None]
V2 = "/wiki/api/v2"


async def _seed(client: httpx.AsyncClient, space: dict[str, Any]) -> dict[str, str]:
    page = await make_page(client, space["id"], "Parent", "<p>alpha beta alpha</p>")
    child = await make_page(client, space["id"], "Child", parentId=page["id"])
    blog = await client.post(
        f"{V2}/blogposts",
        json={
            "spaceId": space["id"],
            "title": "News",
            "body": {"representation": "storage", "value": "<p>n</p>"},
        },
    )
    footer = await client.post(
        f"{V2}/footer-comments",
        json={"pageId": page["id"], "body": {"representation": "storage", "value": "<p>c</p>"}},
    )
    inline = await client.post(
        f"{V2}/inline-comments",
        json={
            "pageId": page["id"],
            "body": {"representation": "storage", "value": "<p>i</p>"},
            "inlineCommentProperties": {
                "textSelection": "alpha",
                "textSelectionMatchCount": 2,
                "textSelectionMatchIndex": 1,
            },
        },
    )
    for parent in (footer, inline):  # replies, so the children listings have items
        kind = "inline" if parent is inline else "footer"
        reply = await client.post(
            f"{V2}/{kind}-comments",
            json={
                "parentCommentId": parent.json()["id"],
                "body": {"representation": "storage", "value": "<p>r</p>"},
            },
        )
        assert reply.status_code in (200, 201), reply.text
    await client.post(
        "/_sim/act/labels",
        json={"as": "admin@example.com", "contentId": page["id"], "name": "howto"},
    )
    att = await client.post(
        "/_sim/act/attachments",
        json={
            "as": "admin@example.com",
            "contentId": page["id"],
            "fileName": "a.png",
            "mediaType": "image/png",
            "size": 10,
        },
    )
    return {
        "page": page["id"],
        "child": child["id"],
        "blog": blog.json()["id"],
        "footer": footer.json()["id"],
        "inline": inline.json()["id"],
        "att": att.json()["id"],
        "space": space["id"],
    }


async def test_reads_conform(
    client: httpx.AsyncClient, space: dict[str, Any], conforms: Conforms
) -> None:
    ids = await _seed(client, space)
    reads = {
        "GET /pages": f"{V2}/pages?body-format=storage",
        "GET /pages/{id}": f"{V2}/pages/{ids['page']}?body-format=atlas_doc_format"
        "&include-labels=true&include-versions=true",
        "GET /pages/{id}/children": f"{V2}/pages/{ids['page']}/children",
        "GET /pages/{id}/direct-children": f"{V2}/pages/{ids['page']}/direct-children",
        "GET /pages/{id}/versions": f"{V2}/pages/{ids['page']}/versions?body-format=storage",
        "GET /spaces": f"{V2}/spaces?description-format=plain",
        "GET /spaces/{id}": f"{V2}/spaces/{ids['space']}",
        "GET /spaces/{id}/pages": f"{V2}/spaces/{ids['space']}/pages",
        "GET /spaces/{id}/blogposts": f"{V2}/spaces/{ids['space']}/blogposts",
        "GET /blogposts": f"{V2}/blogposts",
        "GET /blogposts/{id}": f"{V2}/blogposts/{ids['blog']}?body-format=storage",
        "GET /blogposts/{id}/versions": f"{V2}/blogposts/{ids['blog']}/versions",
        "GET /pages/{id}/footer-comments": f"{V2}/pages/{ids['page']}/footer-comments"
        "?body-format=storage",
        "GET /pages/{id}/inline-comments": f"{V2}/pages/{ids['page']}/inline-comments",
        "GET /blogposts/{id}/footer-comments": f"{V2}/blogposts/{ids['blog']}/footer-comments",
        "GET /blogposts/{id}/inline-comments": f"{V2}/blogposts/{ids['blog']}/inline-comments",
        "GET /footer-comments": f"{V2}/footer-comments",
        "GET /footer-comments/{comment-id}": f"{V2}/footer-comments/{ids['footer']}"
        "?body-format=storage",
        "GET /footer-comments/{id}/children": f"{V2}/footer-comments/{ids['footer']}/children",
        "GET /inline-comments": f"{V2}/inline-comments",
        "GET /inline-comments/{comment-id}": f"{V2}/inline-comments/{ids['inline']}",
        "GET /inline-comments/{id}/children": f"{V2}/inline-comments/{ids['inline']}/children",
        "GET /attachments": f"{V2}/attachments",
        "GET /attachments/{id}": f"{V2}/attachments/{ids['att']}",
        "GET /pages/{id}/attachments": f"{V2}/pages/{ids['page']}/attachments",
        "GET /labels": f"{V2}/labels",
        "GET /pages/{id}/labels": f"{V2}/pages/{ids['page']}/labels",
        "GET /blogposts/{id}/labels": f"{V2}/blogposts/{ids['blog']}/labels",
        "GET /spaces/{id}/labels": f"{V2}/spaces/{ids['space']}/labels",
    }
    for operation, url in reads.items():
        response = await client.get(url)
        conforms(operation, response)
        if operation.endswith("}") is False and "results" in response.json():
            assert "base" in response.json()["_links"], operation


async def test_writes_conform(
    client: httpx.AsyncClient, space: dict[str, Any], conforms: Conforms
) -> None:
    ids = await _seed(client, space)
    body = {"representation": "storage", "value": "<p>new</p>"}
    created = await client.post(
        f"{V2}/pages", json={"spaceId": space["id"], "title": "Made", "body": body}
    )
    conforms("POST /pages", created)
    page_id = created.json()["id"]
    updated = await client.put(
        f"{V2}/pages/{page_id}",
        json={
            "id": page_id,
            "status": "current",
            "title": "Made",
            "body": body,
            "version": {"number": 2},
        },
    )
    conforms("PUT /pages/{id}", updated)
    blog = await client.post(
        f"{V2}/blogposts", json={"spaceId": space["id"], "title": "B2", "body": body}
    )
    conforms("POST /blogposts", blog)
    blog_put = await client.put(
        f"{V2}/blogposts/{blog.json()['id']}",
        json={
            "id": blog.json()["id"],
            "status": "current",
            "title": "B2",
            "body": body,
            "version": {"number": 2},
        },
    )
    conforms("PUT /blogposts/{id}", blog_put)
    footer = await client.post(f"{V2}/footer-comments", json={"pageId": page_id, "body": body})
    conforms("POST /footer-comments", footer)
    conforms(
        "PUT /footer-comments/{comment-id}",
        await client.put(
            f"{V2}/footer-comments/{footer.json()['id']}",
            json={"version": {"number": 2}, "body": body},
        ),
    )
    conforms(
        "PUT /inline-comments/{comment-id}",
        await client.put(
            f"{V2}/inline-comments/{ids['inline']}",
            json={"version": {"number": 2}, "body": body, "resolved": True},
        ),
    )
    inline = await client.post(
        f"{V2}/inline-comments",
        json={
            "pageId": ids["page"],
            "body": body,
            "inlineCommentProperties": {
                "textSelection": "beta",
                "textSelectionMatchCount": 1,
                "textSelectionMatchIndex": 0,
            },
        },
    )
    conforms("POST /inline-comments", inline)
    conforms("POST /spaces", await client.post(f"{V2}/spaces", json={"name": "Ops", "key": "OPS"}))
    conforms(
        "DELETE /footer-comments/{comment-id}",
        await client.delete(f"{V2}/footer-comments/{footer.json()['id']}"),
    )
    conforms(
        "DELETE /inline-comments/{comment-id}",
        await client.delete(f"{V2}/inline-comments/{inline.json()['id']}"),
    )
    conforms("DELETE /attachments/{id}", await client.delete(f"{V2}/attachments/{ids['att']}"))
    conforms("DELETE /pages/{id}", await client.delete(f"{V2}/pages/{page_id}"))
    conforms("DELETE /blogposts/{id}", await client.delete(f"{V2}/blogposts/{blog.json()['id']}"))


async def test_every_spec_operation_is_served(sim: Simulator, spec: dict[str, Any]) -> None:
    from simulator.main import create_app

    app = create_app(sim)
    served = set()
    for mount in app.routes:
        prefix = getattr(mount, "path", "")
        for route in getattr(mount, "routes", []):
            for method in route.methods or []:
                if method != "HEAD":
                    served.add(f"{method} {route.path.replace('comment_id', 'comment-id')}")
        if prefix != "/wiki/api/v2":
            continue
    assert set(spec["operations"]) <= served
