"""The ingest benchmark sends what the endpoint accepts: distinct, valid page_updated events."""

from __future__ import annotations

import json
import time
from pathlib import Path

from app.atlassian.events import from_connect
from bench import loadgen


def test_benchmark_bodies_are_distinct_valid_webhooks() -> None:
    ids = [loadgen.content_id(label, 1, n) for label in ("r0", "r1") for n in range(3)]
    events = [
        from_connect("t", "page_updated", json.loads(loadgen.BODY % ((page,) * 3))) for page in ids
    ]
    assert [e.content_id for e in events] == ids  # accepted: numeric, as Confluence's
    assert len({e.id for e in events}) == 6
    assert all(len(page) == 20 and page.isdigit() for page in ids)
    raw = loadgen.request_bytes("h", "tok", ids[0])
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"Authorization: JWT tok" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert "%(" not in loadgen.WRK_SCRIPT % {"path": loadgen.PATH, "body": loadgen.BODY}


def test_benchmark_tokens_are_signed_per_second_as_confluence_signs_them(tmp_path: Path) -> None:
    signed: list[int] = []

    def sign(second: int) -> str:
        signed.append(second)
        return f"token-{second}"

    tokens = loadgen.Tokens(sign, 5, start=1000)
    assert signed == list(range(1000, 1008))  # the run's seconds and a margin
    assert tokens.now() == "token-1007"  # long after the run: the last one
    lines = tokens.write(tmp_path / "tokens.txt").read_text().splitlines()
    assert lines[0] == "1000 token-1000" and len(lines) == 8
    now = loadgen.Tokens(sign, 5)
    assert now.now() in (f"token-{int(time.time())}", f"token-{int(time.time()) - 1}")
