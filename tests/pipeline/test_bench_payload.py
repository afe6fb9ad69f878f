"""The ingest benchmark sends what the endpoint accepts: distinct, valid page_updated events."""

from __future__ import annotations

import json

from app.atlassian.events import from_connect
from bench import loadgen


def test_benchmark_bodies_are_distinct_valid_webhooks() -> None:
    events = [
        from_connect("t", "page_updated", json.loads(loadgen.BODY % ((f"r1-1-{n}",) * 3)))
        for n in range(3)
    ]
    assert [e.content_id for e in events] == ["r1-1-0", "r1-1-1", "r1-1-2"]
    assert len({e.id for e in events}) == 3
    raw = loadgen.request_bytes("h", "tok", "x1")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Authorization: JWT tok" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert "%(" not in loadgen.WRK_SCRIPT % {"path": loadgen.PATH, "body": loadgen.BODY}
