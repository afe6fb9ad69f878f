"""A demo site for ``reactor dev``: users, spaces, pages, then the app installed for real.

The app is installed through the same signed-install flow as any other (``install.install``),
retried until the app answers, so ``reactor dev`` needs no knowledge of the simulator's
internals: it passes ``--demo --install-app URL`` and reads the printed lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import random
from typing import Any

import httpx

from simulator import comments, edits
from simulator.api import Ctx
from simulator.auth import Principal
from simulator.bodies import render
from simulator.install import InstallError, install
from simulator.params import Query
from simulator.site import Simulator
from simulator.spaces import create_space

log = logging.getLogger("simulator")

USERS = [("alice@example.com", "Alice Example"), ("bob@example.com", "Bob Example")]
PAGES = {
    "DEMO": [
        ("Welcome to the demo", "<p>Edit this page or comment on it to see the app react.</p>"),
        ("Release checklist", "<p>Freeze the branch. Run the tests. Tag the release.</p>"),
        ("Meeting notes 2026-06-10", "<p>Decisions: ship on Friday. TODO: update the runbook.</p>"),
    ],
    "ENG": [
        ("Runbook", "<p>Restart the worker, then check the queue depth.</p>"),
        ("Architecture", "<p>Ingest, queue, workers, budget.</p>"),
    ],
}


def actor_ctx(sim: Simulator, account_id: str, body: Any, base: str, **params: str) -> Ctx:
    """A request context acting as ``account_id`` (for the admin API and the demo)."""
    return Ctx(
        sim=sim,
        principal=Principal(account_id, "basic"),
        query=Query([]),
        path="/wiki/api/v2",
        base=base,
        params=dict(params),
        body=body,
    )


def seed(sim: Simulator) -> None:
    """Create the demo users, spaces and pages once (a loaded state keeps what it has)."""
    store = sim.store
    if store.spaces:
        return
    for email, name in USERS:
        if store.user_by_email(email) is None:
            store.add_user(email, name)
    admin = store.user_by_email("admin@example.com")
    assert admin is not None
    base = (sim.public_url or "http://127.0.0.1") + "/wiki"
    for key, pages in PAGES.items():
        space = create_space(
            store,
            key=key,
            name="Demo space" if key == "DEMO" else "Engineering",
            author_id=admin.account_id,
            now=sim.clock.iso(),
        )
        for title, value in pages:
            body = {
                "spaceId": space.id,
                "title": title,
                "body": {"representation": "storage", "value": value},
            }
            edits.create(actor_ctx(sim, admin.account_id, body, base), "page")
    sim.save_soon()


async def install_when_ready(
    sim: Simulator,
    http: httpx.AsyncClient,
    descriptor_url: str,
    attempts: int = 120,
    *,
    installation_id: str = "",
) -> bool:
    """Install the app as soon as its descriptor answers (it may still be starting).

    ``installation_id``: the app's Forge installation on this site, if it has one. False when
    every attempt failed.
    """
    site = (sim.public_url or "http://127.0.0.1") + "/wiki"
    reason = "no attempt made"
    for _ in range(attempts):
        try:
            app = await install(sim, http, descriptor_url, site, installation_id=installation_id)
        except InstallError as exc:
            reason = str(exc)
            log.debug("install not ready: %s", exc)
            await asyncio.sleep(0.5)
            continue
        print(f"installed  {app.key} (clientKey {app.client_key})", flush=True)
        return True
    print(
        f"install of {descriptor_url} failed: {reason}; retry with POST /_sim/apps/connect",
        flush=True,
    )
    return False


async def keep_acting(sim: Simulator, every: float) -> None:
    """The demo site's people at work: one :func:`random_activity` now, then every ``every`` s.

    Started once the app is installed, so a fresh ``reactor dev`` shows events within seconds
    instead of waiting for someone to act (the seeded pages predate the install: no webhook
    covers them).
    """
    base = (sim.public_url or "http://127.0.0.1") + "/wiki"
    while True:
        try:
            did = random_activity(sim, base)
        except Exception:  # a demo nicety must never take the simulator down
            log.exception("demo activity failed")
        else:
            if did["did"] != "nothing":
                print(
                    f"demo       {did['as']} did {did['did']} on page {did['pageId']}", flush=True
                )
        await asyncio.sleep(every)


def random_activity(sim: Simulator, base: str, rng: random.Random | None = None) -> dict[str, Any]:
    """One thing a person might do on the demo site: edit a page, comment or add a label."""
    rng = rng or sim.rng
    store = sim.store
    people = [u for u in store.users.values() if u.account_type == "atlassian"]
    pages = [c for c in store.contents.values() if c.type == "page" and c.status == "current"]
    if not people or not pages:
        return {"did": "nothing"}
    person, page = rng.choice(people), rng.choice(pages)
    choice = rng.choice(("edit", "comment", "label"))
    if choice == "edit":
        current = render(page.current.representation, page.current.value, "storage")["value"]
        line = html.escape(f"Edited by {person.display_name}.", quote=False)
        body = {
            "id": page.id,
            "status": "current",
            "title": page.title,
            "body": {"representation": "storage", "value": f"{current}<p>{line}</p>"},
            "version": {"number": page.current.number + 1, "message": "demo edit"},
        }
        edits.update(actor_ctx(sim, person.account_id, body, base, id=page.id), "page")
    elif choice == "comment":
        body = {
            "pageId": page.id,
            "body": {"representation": "storage", "value": "<p>Looks good to me.</p>"},
        }
        comments.create(actor_ctx(sim, person.account_id, body, base), "footer")
    else:
        label = store.label_named(rng.choice(("draft", "reviewed", "howto")))
        with contextlib.suppress(ValueError):
            if label.id not in page.label_ids:
                page.label_ids.append(label.id)
                sim.emit("label_added", "label", label.id, person.account_id, contentId=page.id)
    return {"did": choice, "pageId": page.id, "as": person.email}
