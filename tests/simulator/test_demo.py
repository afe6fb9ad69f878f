"""The demo site and its place in ``reactor dev``: seeding, random activity, install on start."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from app.devstack import DEV_FORGE_APP_ID, DevStack
from app.embedded_redis import free_port
from app.settings import Settings
from simulator import edits
from simulator.demo import actor_ctx, random_activity, seed
from simulator.main import create_app
from simulator.site import build
from tests.conftest import LiveServer
from tests.simulator.conftest import TOKEN
from tests.simulator.fakeapp import FakeApp


def test_seed_creates_people_spaces_and_pages_once(keys: Any) -> None:
    sim = build(api_token=TOKEN, keys=keys, seed=1)
    seed(sim)
    keys_ = sorted(s.key for s in sim.store.spaces.values())
    assert keys_ == ["DEMO", "ENG"]
    assert {u.email for u in sim.store.users.values()} >= {"alice@example.com", "bob@example.com"}
    pages = len(sim.store.contents)
    seed(sim)
    assert len(sim.store.contents) == pages
    events: list[str] = []
    sim.listeners.append(lambda e: events.append(e.name))
    for _ in range(12):
        did = random_activity(sim, "http://sim/wiki")
        assert did["did"] in ("edit", "comment", "label")
    assert events and set(events) <= {"page_updated", "comment_created", "label_added"}


class Picks(random.Random):
    """Chooses, from each sequence, the first item that is one of ``picks``."""

    def __init__(self, *picks: Any) -> None:
        super().__init__(0)
        self.picks = picks

    def choice(self, seq: Any) -> Any:
        return next(item for item in seq if item in self.picks)


def test_random_edits_keep_storage_well_formed(keys: Any) -> None:
    """A random edit appends escaped storage, also to a page written in atlas_doc_format."""
    sim = build(api_token=TOKEN, keys=keys, seed=1)
    seed(sim)
    tom = sim.store.add_user("tom@example.com", "Tom & <Jerry>")
    space = next(s for s in sim.store.spaces.values() if s.key == "DEMO")
    text = {"type": "text", "text": "Hi"}
    adf = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [text]}]}
    body = {"representation": "atlas_doc_format", "value": json.dumps(adf)}
    ctx = actor_ctx(sim, tom.account_id, {"spaceId": space.id, "title": "A", "body": body}, "/")
    page = sim.store.contents[edits.create(ctx, "page").data["id"]]
    did = random_activity(sim, "http://sim/wiki", Picks(tom, page, "edit"))
    assert did == {"did": "edit", "pageId": page.id, "as": "tom@example.com"}
    assert page.current.number == 2 and page.current.representation == "storage"
    assert page.current.value == "<p>Hi</p><p>Edited by Tom &amp; &lt;Jerry&gt;.</p>"


async def test_the_simulator_installs_the_app_once_it_answers(keys: Any) -> None:
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    fake = FakeApp(sim_url)
    app_port = free_port()
    fake.base_url = f"http://127.0.0.1:{app_port}"
    sim = build(api_token=TOKEN, keys=keys, public_url=sim_url)
    sim_server = LiveServer(
        create_app(sim, install_app=f"{fake.base_url}/atlassian-connect.json"), port=sim_port
    )
    sim_server.start()  # the app is not up yet: the simulator keeps trying
    app_server = LiveServer(fake.app(), port=app_port)
    try:
        await asyncio.sleep(0.6)
        app_server.start()
        for _ in range(100):
            if sim.store.connect_apps:
                break
            await asyncio.sleep(0.05)
        assert list(sim.store.connect_apps) == ["confluence-reactor"]
        assert (
            fake.installs[0]["clientKey"] == sim.store.connect_apps["confluence-reactor"].client_key
        )
    finally:
        sim_server.stop()
        app_server.stop()


async def _installed_demo(keys: Any, every: float) -> tuple[FakeApp, LiveServer, LiveServer]:
    sim_port, app_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    fake = FakeApp(sim_url)
    fake.base_url = f"http://127.0.0.1:{app_port}"
    sim = build(api_token=TOKEN, keys=keys, public_url=sim_url, seed=3)
    seed(sim)
    app = create_app(
        sim, install_app=f"{fake.base_url}/atlassian-connect.json", demo_activity=every
    )
    servers = LiveServer(fake.app(), port=app_port), LiveServer(app, port=sim_port)
    for server in servers:
        server.start()
    for _ in range(100):
        if fake.installs:
            break
        await asyncio.sleep(0.05)
    assert fake.installs
    return fake, *servers


async def test_demo_users_act_as_soon_as_the_app_is_installed(keys: Any) -> None:
    """A fresh demo site shows the app an event at once; nobody has to act (reactor dev)."""
    fake, *servers = await _installed_demo(keys, every=60)
    try:
        for _ in range(100):
            if fake.webhooks:
                break
            await asyncio.sleep(0.05)
        assert [name for name, _ in fake.webhooks] in (
            ["page_updated"],
            ["comment_created"],
            ["label_added"],
        )
        assert fake.rejected == []  # signed with the installed tenant's secret
    finally:
        for server in servers:
            server.stop()


async def test_demo_users_keep_still_without_an_activity_interval(keys: Any) -> None:
    fake, *servers = await _installed_demo(keys, every=0)
    try:
        await asyncio.sleep(1.0)
        assert fake.webhooks == []
    finally:
        for server in servers:
            server.stop()


def test_dev_stack_plans_the_simulator(tmp_path: Path) -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0",
        state_dir=tmp_path,
        dashboard_token="demo-operator-token",  # type: ignore[arg-type]
        secret_key="Yk3bZ1d3b0mT6m2o7w9Q3n3a8cX4m1tG5f0r2y6u8iQ=",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    stack = DevStack(settings, port=18001, sim_api_token="given")
    env = stack.environment()
    (sim,) = [c for c in stack.plan() if c.name == "simulator"]
    assert sim.argv[:4] == [sys.executable, "-m", "app.cli", "sim"]
    assert "--demo" in sim.argv and not any("given" in arg for arg in sim.argv)
    assert env["REACTOR_SIM_API_TOKEN"] == "given"  # in its environment, not on its command line
    # --forge: the simulator signs as the dev app; an app id exported for a real Forge app
    # must not leak into the stack, or every Forge event would fail verification
    forge = DevStack(settings, port=18001, sim_api_token="given", forge=True)
    os.environ["REACTOR_FORGE_APP_ID"] = "ari:cloud:ecosystem::app/someone-elses"
    try:
        forge_env = forge.environment()
    finally:
        del os.environ["REACTOR_FORGE_APP_ID"]
    assert forge_env["REACTOR_FORGE_APP_ID"] == DEV_FORGE_APP_ID
    assert forge_env["REACTOR_FORGE_JWKS_URL"] == f"{forge.sim_url}/_sim/forge/jwks.json"
    assert sim.argv[sim.argv.index("--demo-activity") + 1] == "30"  # the default
    quiet = DevStack(settings, port=18001, sim_api_token="given", activity=0)
    quiet.environment()
    (still,) = [c for c in quiet.plan() if c.name == "simulator"]
    assert still.argv[still.argv.index("--demo-activity") + 1] == "0"
    assert (
        sim.argv[sim.argv.index("--install-app") + 1]
        == "http://127.0.0.1:18001/atlassian-connect.json"
    )
    assert env["REACTOR_CONNECT_INSTALL_KEYS_URL"] == f"{stack.sim_url}/_sim/install-keys"
    assert env["REACTOR_CONNECT_OAUTH_URL"] == stack.sim_url
    # without --sim-api-token a token is generated once and kept in the state directory
    again = DevStack(settings, port=18001)
    again.environment()
    kept = (tmp_path / "sim_api_token").read_text().strip()
    assert again.sim_api_token == kept and len(kept) > 16


async def test_a_failed_demo_install_prints_its_reason(
    keys: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not only at debug level: the operator sees why the app was never installed."""
    import httpx

    from simulator.demo import install_when_ready

    sim = build(api_token=TOKEN, keys=keys, public_url="http://127.0.0.1:1")
    descriptor = f"http://127.0.0.1:{free_port()}/atlassian-connect.json"  # nothing listens
    async with httpx.AsyncClient() as http:
        assert not await install_when_ready(sim, http, descriptor, attempts=1)
    out = capsys.readouterr().out
    assert f"install of {descriptor} failed: could not read the descriptor: ConnectError" in out
