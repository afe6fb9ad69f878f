"""Malformed input never produces a 500: every write endpoint answers 4xx with an envelope."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.main import create_app
from simulator.site import Simulator
from tests.simulator.conftest import basic

FIELDS = [
    "id",
    "status",
    "title",
    "body",
    "version",
    "spaceId",
    "pageId",
    "parentId",
    "number",
    "representation",
    "value",
    "parentCommentId",
    "inlineCommentProperties",
    "textSelection",
    "textSelectionMatchCount",
    "name",
    "key",
    "resolved",
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.sampled_from(["65539", "current", "draft", "storage", "atlas_doc_format"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=6)
    ),
    max_leaves=14,
)
TARGETS = [
    ("POST", "/wiki/api/v2/pages"),
    ("PUT", "/wiki/api/v2/pages/{page}"),
    ("POST", "/wiki/api/v2/blogposts"),
    ("POST", "/wiki/api/v2/spaces"),
    ("POST", "/wiki/api/v2/footer-comments"),
    ("POST", "/wiki/api/v2/inline-comments"),
    ("PUT", "/wiki/api/v2/footer-comments/{comment}"),
]


def _prepare(sim: Simulator) -> dict[str, str]:
    from simulator import comments, edits
    from simulator.demo import actor_ctx
    from simulator.spaces import create_space

    admin = sim.store.user_by_email("admin@example.com")
    assert admin is not None
    space = create_space(
        sim.store, key="DEV", name="Dev", author_id=admin.account_id, now=sim.clock.iso()
    )
    body = {"representation": "storage", "value": "<p>a</p>"}
    page = edits.create(
        actor_ctx(sim, admin.account_id, {"spaceId": space.id, "title": "T", "body": body}, "x"),
        "page",
    ).data
    comment = comments.create(
        actor_ctx(sim, admin.account_id, {"pageId": page["id"], "body": body}, "x"), "footer"
    ).data
    return {"page": page["id"], "comment": comment["id"]}


def test_garbage_bodies_get_4xx_and_successes_conform(
    sim: Simulator, conforms: Callable[[str, httpx.Response], None]
) -> None:
    ids = _prepare(sim)
    app = create_app(sim)

    async def send(method: str, path: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="https://site.test",
            headers={"Authorization": basic()},
        ) as c:
            return await c.request(method, path.format(**ids), json=body)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=JSON, target=st.sampled_from(TARGETS))
    def probe(body: Any, target: tuple[str, str]) -> None:
        response = asyncio.run(send(target[0], target[1], body))
        assert response.status_code < 500, (target, body, response.text)
        if response.status_code >= 400:
            assert response.json()["errors"][0]["status"] == response.status_code
        else:
            operation = target[1].removeprefix("/wiki/api/v2")
            operation = operation.replace("{page}", "{id}").replace("{comment}", "{comment-id}")
            conforms(f"{target[0]} {operation}", response)

    probe()
    raw = asyncio.run(send("POST", "/wiki/api/v2/pages", None))
    assert raw.status_code == 400
