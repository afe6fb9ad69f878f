"""The effect ledger on the real test Redis, and loop prevention on event payload shapes."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from app.atlassian.events import from_forge
from app.confluence.pages import edit_message
from app.settings import Settings
from tests.reactions.events import page_event
from workers import storage
from workers.effects import DRY_RUN_KEEP, EffectLedger, LoopGuardPolicy, Pending, effect_key
from workers.loops import ignore_reason
from workers.rule_actions import replace_transform


async def test_effect_states(redis: Redis, settings: Settings) -> None:
    ledger = EffectLedger(redis, settings.redis_prefix)
    key = effect_key("t", "ev_1", "r", "comment", "1")
    assert key == effect_key("t", "ev_1", "r", "comment", "1") != effect_key("t", "ev_2", "r")
    assert await ledger.state(key) == ("new", None)
    await ledger.begin(key)
    assert (await ledger.state(key))[0] == "pending"
    await ledger.done(key, "9001")
    assert await ledger.state(key) == ("done", "9001")
    assert await redis.ttl(f"{settings.redis_prefix}effect:{key}") > 0


async def test_a_pending_claim_names_its_owner_and_lease(redis: Redis, settings: Settings) -> None:
    ledger = EffectLedger(redis, settings.redis_prefix, lease_seconds=30)
    key = effect_key("t", "r", "once-key")
    assert await ledger.claim(key, "t", "p1", "r", owner="ev_1") == ("new", None)
    state, found = await ledger.claim(key, "t", "p1", "r", owner="ev_2")
    assert state == "pending" and isinstance(found, Pending) and found.owner == "ev_1"
    assert found.live(time.time()) and not found.live(time.time() + 31)
    # taking a claim over replaces exactly the record read, once
    assert await ledger.take_over(key, found, owner="ev_2")
    assert not await ledger.take_over(key, found, owner="ev_3")
    state, now = await ledger.claim(key, "t", "p1", "r", owner="ev_3")
    assert isinstance(now, Pending) and now.owner == "ev_2"


async def test_loop_guard_counts_writes_within_the_window(redis: Redis, settings: Settings) -> None:
    ledger = EffectLedger(redis, settings.redis_prefix, LoopGuardPolicy(limit=2, window_seconds=1))
    assert await ledger.allow_write("t", "p1", "r")
    for n in range(2):  # two writes that changed something
        await ledger.applied(effect_key("t", str(n)), "1", "t", "p1", "r", "comment")
    assert not await ledger.allow_write("t", "p1", "r")
    assert await ledger.allow_write("t", "p2", "r")  # per content
    assert await ledger.allow_write("t", "p1", "other")  # per reaction
    await asyncio.sleep(1.1)
    assert await ledger.allow_write("t", "p1", "r")


async def test_claim_marks_pending_once_and_applied_counts_the_write(
    redis: Redis, settings: Settings
) -> None:
    ledger = EffectLedger(redis, settings.redis_prefix, LoopGuardPolicy(limit=2, window_seconds=60))
    key = effect_key("t", "ev_1", "r", "comment", "1")
    assert await ledger.claim(key, "t", "p1", "r") == ("new", None)
    assert await ledger.state(key) == ("pending", None)
    state, pending = await ledger.claim(key, "t", "p1", "r")  # a run stopped mid-write
    assert state == "pending" and isinstance(pending, Pending) and pending.owner is None
    await ledger.applied(key, "9001", "t", "p1", "r", "comment")
    assert await ledger.claim(key, "t", "p1", "r") == ("done", "9001")
    assert (await ledger.counts())["r:comment"] == 1
    guard = f"{settings.redis_prefix}loopguard:t:p1:r"
    assert await redis.get(guard) == b"1" and 0 < await redis.ttl(guard) <= 60
    # a write that changed nothing is done but counts nowhere
    other = effect_key("t", "ev_2", "r", "comment", "1")
    assert (await ledger.claim(other, "t", "p1", "r"))[0] == "new"
    await ledger.applied(other, None, "t", "p1", "r", "comment")
    assert await ledger.state(other) == ("done", None)
    assert await redis.get(guard) == b"1"


async def test_claim_refuses_past_the_loop_guard_without_marking(
    redis: Redis, settings: Settings
) -> None:
    ledger = EffectLedger(redis, settings.redis_prefix, LoopGuardPolicy(limit=1, window_seconds=60))
    first, second = effect_key("t", "a"), effect_key("t", "b")
    assert (await ledger.claim(first, "t", "p1", "r"))[0] == "new"
    await ledger.applied(first, "1", "t", "p1", "r", "comment")
    assert await ledger.claim(second, "t", "p1", "r") == ("guard", None)
    assert await ledger.state(second) == ("new", None)
    assert (await ledger.claim(second, "t", "p2", "r"))[0] == "new"  # per content


async def test_dry_run_list_is_bounded_newest_first(redis: Redis, settings: Settings) -> None:
    ledger = EffectLedger(redis, settings.redis_prefix)
    for i in range(DRY_RUN_KEEP + 3):
        await ledger.record_dry_run({"n": i})
    assert await redis.llen(ledger.dry_run_key) == DRY_RUN_KEEP  # type: ignore[misc]
    assert [r["n"] for r in await ledger.dry_runs(2)] == [DRY_RUN_KEEP + 2, DRY_RUN_KEEP + 1]


async def test_app_accounts_are_learned_per_tenant_and_known_everywhere(
    redis: Redis, settings: Settings
) -> None:
    """An account id names one Atlassian account on every site: one the app wrote with on one
    tenant's site is the app's wherever it shows up."""
    ledger = EffectLedger(redis, settings.redis_prefix)
    await ledger.learn_app_accounts("t1", {"app-1"})
    await ledger.learn_app_accounts("t1", set())
    assert await ledger.app_accounts("t1") == {"app-1"}
    assert await ledger.app_accounts("t2") == {"app-1"}
    assert await ledger.is_app_account("t2", "app-1")
    assert not await ledger.is_app_account("t2", "a-person")
    assert await redis.smembers(f"{settings.redis_prefix}app-accounts:t2") == set()  # type: ignore[misc]


def test_ignore_reasons() -> None:
    event = page_event()
    assert ignore_reason(event, {"app"}) is None
    assert ignore_reason(replace(event, actor="app"), {"app"}) == "the actor is the app's account"
    assert ignore_reason(replace(event, self_generated=True), set()) is not None
    assert ignore_reason(page_event(message="fixed typo"), set()) is None


def test_the_edit_marker_counts_only_with_the_apps_account_as_the_versions_author() -> None:
    # anyone can type the marker: a person's version that starts with it is still theirs
    marked = page_event(message=edit_message("x"))
    assert ignore_reason(marked, set()) is None
    assert ignore_reason(marked, {"app"}) is None
    # the version's author named in the payload (Connect's last modifier) is the app's account
    by_app = page_event(actor="", message=edit_message("x"))
    by_app.raw["page"]["lastModifierAccountId"] = "app"
    assert ignore_reason(by_app, {"app"}) == (
        "the version message carries the app's edit marker and its author is the app"
    )
    assert ignore_reason(by_app, {"other"}) is None


def test_forge_payload_with_the_app_marker_is_ignored_only_when_the_app_wrote_it() -> None:
    body = {
        "eventType": "avi:confluence:updated:page",
        "atlassianId": "user-1",
        "eventCreatedDate": "2026-11-27T10:00:00.000Z",
        "content": {
            "id": "1001",
            "type": "page",
            "title": "RFC",
            "space": {"id": "77", "key": "DEV"},
            "version": {"number": 4, "message": edit_message("redacted 1 credential(s)")},
        },
    }
    event = from_forge("forge:cloud-1", body)
    assert ignore_reason(event, {"app"}) is None  # a person typed the marker
    body["content"]["version"]["authorId"] = "app"  # type: ignore[index]
    event = from_forge("forge:cloud-1", body)
    assert ignore_reason(event, {"app"}) == (
        "the version message carries the app's edit marker and its author is the app"
    )


_chunk = st.text(alphabet=st.sampled_from(list("ab<>&x ")), max_size=6)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@settings(max_examples=150, deadline=None)
@given(st.lists(_chunk, max_size=6), _chunk)
def test_replace_action_keeps_storage_well_formed(chunks: list[str], replacement: str) -> None:
    body = "".join(f"<p><strong>{_esc(c)}</strong>{_esc(c)}&nbsp;</p>" for c in chunks)
    transform = replace_transform(re.compile("[ab&<]+"), lambda m: replacement)
    _, out = transform("t", body)
    assert storage.well_formed(out) is None


async def test_the_reactor_reads_learned_app_accounts_at_most_every_few_seconds(
    redis: Redis, settings: Settings
) -> None:
    from workers.reactor import ACCOUNTS_CACHE_SECONDS, Reactor, ReactorOptions
    from workers.routing import Router

    now = [100.0]
    options = ReactorOptions(app_accounts=frozenset({"configured"}))
    reactor = Reactor(Router(), client_for=None, options=options, clock=lambda: now[0])  # type: ignore[arg-type]
    ledger = EffectLedger(redis, settings.redis_prefix)
    await ledger.learn_app_accounts("t", {"learned"})
    assert await reactor.app_accounts(ledger, "t") == {"configured", "learned"}
    await ledger.learn_app_accounts("t", {"elsewhere"})  # another worker process learns one
    assert "elsewhere" not in await reactor.app_accounts(ledger, "t")
    await reactor.learn_app_accounts(ledger, "t", frozenset({"mine"}))  # this process learns one
    assert "mine" in await reactor.app_accounts(ledger, "t")
    assert await redis.sismember(f"{settings.redis_prefix}app-accounts:t", "mine")
    now[0] += ACCOUNTS_CACHE_SECONDS + 0.1
    assert await reactor.app_accounts(ledger, "t") == {"configured", "learned", "elsewhere", "mine"}
