"""End to end over real sockets: the simulator, the web app, a worker running reactions.

Users create and edit pages in the simulator; its signed webhooks reach the app, the worker
runs the rules file's reactions through the real Confluence client, and the resulting comments
and edits appear exactly once, also when every webhook is delivered twice, and the app's own
edits and comments (which the simulator reports like Confluence does) trigger nothing.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.embedded_redis import free_port
from app.main import create_app
from app.settings import Settings
from simulator.keys import KeyPair
from simulator.main import create_app as create_sim
from simulator.site import build
from tests.conftest import LiveServer
from workers.effects import EffectLedger
from workers.main import build_worker

AWS_ID, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ANN = "ann@example.com"
TOKEN = "sim-reactions-token"


def basic(email: str = "admin@example.com", token: str = TOKEN) -> str:
    return "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()


RULES = """
version: 1
rules:
  - name: secrets
    reaction: secrets
  - name: welcome
    reaction: welcome
    space: DEV
    options: {{checklist: ["Add an owner"]}}
  - name: rfc-template
    reaction: template_guard
    options: {{parent: "{parent}", sections: [Context, Decision]}}
"""


class Stack:
    def __init__(self, sim_url: str, settings: Settings) -> None:
        self.sim_url = sim_url
        self.settings = settings
        self.http = httpx.AsyncClient(
            base_url=sim_url, headers={"Authorization": basic()}, timeout=20
        )

    async def act(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(f"/_sim/act/{path}", json={"as": ANN, **body})
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()
        return data

    async def settle(self, rounds: int = 4) -> None:
        """Deliver webhooks and drain the queue until nothing new happens."""
        for _ in range(rounds):
            drained = await self.http.post("/_sim/webhooks/drain", json={"timeout": 10})
            assert drained.status_code in (200, 201), drained.text
            worker = build_worker(self.settings, burst=True, handle_signals=False)
            try:
                await worker.main()
            finally:
                await worker.close()

    async def page(self, page_id: str) -> dict[str, Any]:
        response = await self.http.get(
            f"/wiki/api/v2/pages/{page_id}", params={"body-format": "storage"}
        )
        data: dict[str, Any] = response.json()
        return data

    async def comments(self, page_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/wiki/api/v2/pages/{page_id}/footer-comments", params={"body-format": "storage"}
        )
        results: list[dict[str, Any]] = response.json()["results"]
        return results


@pytest.fixture(scope="module")
def keys() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate("sim-install"), KeyPair.generate("sim-forge")


@pytest.fixture
def stack(
    settings: Settings, redis: Redis, tmp_path: Path, keys: tuple[KeyPair, KeyPair]
) -> Iterator[tuple[Stack, LiveServer, Path]]:
    sim_port, app_port = free_port(), free_port()
    sim_url, app_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{app_port}"
    sim = build(api_token=TOKEN, keys=keys, public_url=sim_url, seed=5)
    rules = tmp_path / "rules.yml"
    app_settings = settings.model_copy(
        update={
            "base_url": app_url,
            "connect_install_keys_url": f"{sim_url}/_sim/install-keys",
            "rules_file": rules,
        }
    )
    sim_server = LiveServer(create_sim(sim), port=sim_port)
    app_server = LiveServer(create_app(app_settings), port=app_port)
    sim_server.start()
    app_server.start()
    try:
        yield Stack(sim_url, app_settings), app_server, rules
    finally:
        app_server.stop()
        sim_server.stop()


@pytest.mark.slow
async def test_reactions_apply_exactly_once_and_ignore_their_own_edits(
    stack: tuple[Stack, LiveServer, Path], redis: Redis
) -> None:
    s, app, rules = stack
    installed = await s.http.post(
        "/_sim/apps/connect", json={"descriptorUrl": f"{app.url}/atlassian-connect.json"}
    )
    assert installed.status_code == 201, (installed.url, installed.headers, installed.text)
    await s.http.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
    await s.http.post("/_sim/users", json={"email": ANN, "displayName": "Ann"})
    ann = next(u for u in (await s.http.get("/_sim/")).json()["users"] if u["email"] == ANN)
    await s.http.put("/_sim/faults", json={"webhook_duplicate": 1.0})

    parent = await s.act("pages", {"spaceKey": "DEV", "title": "RFCs", "body": "index"})
    rules.write_text(RULES.format(parent=parent["id"]))
    rfc = await s.act(
        "pages",
        {
            "spaceKey": "DEV",
            "title": "RFC 1",
            "parentId": parent["id"],
            "body": "<h2>Context</h2><p>We need a cache.</p>",
        },
    )
    await s.settle()

    comments = await s.comments(rfc["id"])
    bodies = [c["body"]["storage"]["value"] for c in comments]
    assert len(bodies) == 2, bodies  # welcome + template guard, once each despite duplicates
    guard = next(b for b in bodies if "Template check" in b)
    assert "Decision" in guard and "Context" not in guard.split("requires")[1]

    # Ann pastes AWS credentials: redacted in a new version, she is told once, by mention
    await s.act(
        f"pages/{rfc['id']}/edit",
        {"body": f"<h2>Context</h2><p>key {AWS_ID} secret: {AWS_SECRET}</p><h2>Decision</h2>"},
    )
    await s.settle()
    page = await s.page(rfc["id"])
    storage = page["body"]["storage"]["value"]
    assert AWS_ID not in storage and AWS_SECRET not in storage
    assert "[REDACTED aws-access-key-id]" in storage
    assert page["version"]["message"].startswith("[confluence-reactor]")
    comments = await s.comments(rfc["id"])
    bodies = [c["body"]["storage"]["value"] for c in comments]
    assert len(bodies) == 3, bodies
    report = bodies[-1]
    assert f'ri:account-id="{ann["accountId"]}"' in report and "AWS access key ID" in report
    assert AWS_ID not in report and AWS_SECRET not in report
    # the guard comment was edited in place: the page now has every section
    assert any("Resolved" in b for b in bodies)
    # nothing reacted to the app's own redaction edit or comments: one app version only
    assert page["version"]["number"] == 3
    log = (await s.http.get("/_sim/webhooks")).json()
    app_account = installed.json()["accountId"]
    own = [d for d in log if d["body"].get("userAccountId") == app_account]
    assert {d["event"] for d in own} >= {"page_updated", "comment_created", "comment_updated"}
    assert all(d["status"] == 204 for d in log if d["kind"] == "connect")
    assert len(log) >= 2 * len({(d["event"], str(d["body"])) for d in log}) - 1  # duplicated
    assert len(await s.comments(parent["id"])) == 1
    counts = await EffectLedger(redis, s.settings.redis_prefix).counts()
    assert counts == {
        "rule:welcome:comment": 2,  # the parent page and the RFC
        "rule:rfc-template:comment": 1,
        "rule:rfc-template:update_comment": 1,
        "rule:secrets:edit": 1,
        "rule:secrets:comment": 1,
    }


@pytest.mark.slow
async def test_rerun_after_interrupted_writes_posts_nothing_twice(
    stack: tuple[Stack, LiveServer, Path], redis: Redis
) -> None:
    """Every event runs again as if its worker died after writing but before recording it."""
    import json

    import structlog

    from app.queue import EventQueue
    from workers import clients
    from workers.dispatch import JobContext

    s, app, rules = stack
    installed = await s.http.post(
        "/_sim/apps/connect", json={"descriptorUrl": f"{app.url}/atlassian-connect.json"}
    )
    assert installed.status_code == 201, installed.text
    await s.http.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
    await s.http.post("/_sim/users", json={"email": ANN, "displayName": "Ann"})
    parent = await s.act("pages", {"spaceKey": "DEV", "title": "RFCs", "body": "index"})
    rules.write_text(RULES.format(parent=parent["id"]))
    rfc = await s.act(
        "pages",
        {"spaceKey": "DEV", "title": "RFC 2", "parentId": parent["id"], "body": f"<p>{AWS_ID}</p>"},
    )
    await s.settle()
    before = [c["body"]["storage"]["value"] for c in await s.comments(rfc["id"])]
    version = (await s.page(rfc["id"]))["version"]["number"]
    assert len(before) == 3 and version == 2  # welcome, secret report, template guard

    prefix = s.settings.redis_prefix
    effects = [k async for k in redis.scan_iter(match=f"{prefix}effect:*")]
    assert effects
    for key in effects:
        await redis.set(key, json.dumps({"state": "pending"}))
    keys = [k.decode() async for k in redis.scan_iter(match=f"{prefix}event:*")]
    ids = [k.removeprefix(f"{prefix}event:") for k in keys]
    events = [e for e in [await EventQueue(redis, s.settings).get(i) for i in ids] if e]
    assert len(events) >= 3

    worker = build_worker(s.settings, burst=True, handle_signals=False)
    ctx = {**worker.ctx, "redis": redis}
    await clients.start(ctx)
    try:
        for event in events:
            log = structlog.get_logger("test").bind(event_id=event.id)
            await ctx["dispatch"](event, JobContext(event.id, 2, s.settings, redis, log))
    finally:
        await clients.stop(ctx)
        await worker.close()
    after = [c["body"]["storage"]["value"] for c in await s.comments(rfc["id"])]
    assert after == before
    assert (await s.page(rfc["id"]))["version"]["number"] == version


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_worker_killed_mid_job_then_the_rerun_finishes_without_duplicates(
    stack: tuple[Stack, LiveServer, Path], redis: Redis, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    s, app, rules = stack
    installed = await s.http.post(
        "/_sim/apps/connect", json={"descriptorUrl": f"{app.url}/atlassian-connect.json"}
    )
    assert installed.status_code == 201, installed.text
    await s.http.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
    await s.http.post("/_sim/users", json={"email": ANN, "displayName": "Ann"})
    rules.write_text(RULES.format(parent="0"))
    assert s.settings.redis_url is not None and s.settings.secret_key is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "REACTOR_REDIS_URL": s.settings.redis_url,
        "REACTOR_REDIS_PREFIX": s.settings.redis_prefix,
        "REACTOR_SECRET_KEY": s.settings.secret_key.get_secret_value(),
        "REACTOR_RULES_FILE": str(rules),
        "REACTOR_JOB_TIMEOUT_SECONDS": "5",
        "REACTOR_LOG_FORMAT": "console",
    }
    await s.http.put("/_sim/faults", json={"latency_ms": 300})  # every API call is slow
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page = await s.act(
            "pages", {"spaceKey": "DEV", "title": "Keys", "body": f"<p>{AWS_ID}</p>"}
        )
        await s.http.post("/_sim/webhooks/drain", json={"timeout": 10})
        deadline = time.monotonic() + 30
        while (await s.page(page["id"]))["version"]["number"] < 2:  # the redaction landed
            assert time.monotonic() < deadline, "the worker never redacted the page"
        proc.send_signal(signal.SIGKILL)  # mid-job: the author's comments are still to come
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    await s.http.put("/_sim/faults", json={"latency_ms": 0})
    await asyncio.sleep(8)  # the dead worker's claim on the job expires (job timeout + margin)
    await s.settle()
    bodies = [c["body"]["storage"]["value"] for c in await s.comments(page["id"])]
    assert sum("credential" in b for b in bodies) == 1, bodies
    assert sum("Before you share it" in b for b in bodies) == 1, bodies
    final = await s.page(page["id"])
    assert final["version"]["number"] == 2 and AWS_ID not in final["body"]["storage"]["value"]
