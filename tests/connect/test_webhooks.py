"""Webhooks end to end through the app: verified, normalised, stored, acknowledged."""

from __future__ import annotations

import json

from app.atlassian.connect_jwt import encode_connect_token
from app.atlassian.events import event_id

from .conftest import FIXTURES_DIR, ConnectApp


def page_created() -> dict[str, object]:
    return json.loads((FIXTURES_DIR / "page_created.json").read_text())


async def test_signed_webhook_reaches_the_queue(connect_app: ConnectApp) -> None:
    client_key, secret = await connect_app.install()
    path = "/connect/webhooks/page_created?lic=none"
    token = encode_connect_token(issuer=client_key, secret=secret, method="POST", url=path)
    resp = await connect_app.client.post(
        path, json=page_created(), headers={"Authorization": f"JWT {token}"}
    )
    assert resp.status_code == 204, resp.text
    body = page_created()
    page = body["page"]
    assert isinstance(page, dict)
    expected_id = event_id(client_key, "page.created", "13139970", 1, int(str(body["timestamp"])))
    event = await connect_app.app.state.queue.get(expected_id)
    assert event is not None
    assert event.tenant == client_key
    assert event.type == "page.created"
    assert event.content_id == "13139970"
