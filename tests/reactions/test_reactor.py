"""Dispatch end to end on a fake Confluence and the real test Redis: exactly-once effects,
loop prevention, the loop guard, dry-run and failure isolation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from app.atlassian.events import Event
from app.budget.hook import BudgetExhausted
from app.confluence.errors import Forbidden, NotFound, ServerError
from app.confluence.pages import edit_message
from app.errors import Defer, PermanentFailure
from app.settings import Settings
from tests.reactions.events import comment_event, page_event
from tests.reactions.fake import APP, FakeConfluence
from workers.context import ReactionContext
from workers.dispatch import JobContext
from workers.effects import EffectLedger, LoopGuardPolicy
from workers.ops import Content, Kind
from workers.reactions import secrets
from workers.reactor import ClientFactory, Reactor, ReactorOptions
from workers.routing import Router

Job = Callable[[Event], JobContext]
MakeReactor = Callable[..., Reactor]
AWS = "AKIAIOSFODNN7EXAMPLE"


def _secret_router() -> Router:
    router = Router()
    router.include(secrets.router)
    return router


def _comment(fake: FakeConfluence, body: str) -> None:
    """Comment 5001 by user-1 on page 1001."""
    fake.add(
        Content(
            id="5001",
            kind="comment",
            title="",
            body=body,
            version=1,
            author_id="user-1",
            parent_id="1001",
            parent_kind="page",
        )
    )


def _leak(fake: FakeConfluence) -> None:
    page = fake.contents["1001"]
    fake.add(replace(page, body=page.body + f"<p>key {AWS}</p>", version=3, author_id="user-1"))


async def test_secret_is_redacted_and_author_told_exactly_once(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    _leak(fake)
    event = page_event(version=3)
    react = reactor(_secret_router())
    await react(event, job(event))
    assert [c[0] for c in fake.writes()] == ["update", "comment"]
    page = fake.contents["1001"]
    assert AWS not in page.body and page.version == 4
    assert page.version_message.startswith(edit_message(""))
    (comment,) = fake.comments["1001"]
    assert 'ri:account-id="user-1"' in comment.body and AWS not in comment.body
    # the job runs again (retry, redelivery, replay): nothing new happens
    await react(event, job(event))
    assert len(fake.writes()) == 2


async def test_interrupted_run_does_not_repeat_effects(
    fake: FakeConfluence, job: Job, reactor: MakeReactor, redis: Redis, settings: Settings
) -> None:
    _leak(fake)
    event = page_event(version=3)
    react = reactor(_secret_router())
    await react(event, job(event))
    # simulate a worker killed after the writes but before they were recorded as done
    keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}effect:*")]
    assert len(keys) == 2
    for key in keys:
        await redis.set(key, json.dumps({"state": "pending"}))
    await react(event, job(event))
    assert [c[0] for c in fake.writes()] == ["update", "comment"]


async def test_failed_write_is_retried_and_then_applied_once(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    _leak(fake)
    event = page_event(version=3)
    react = reactor(_secret_router())
    fake.fail_next.append(RuntimeError("502 from Confluence"))
    with pytest.raises(RuntimeError):
        await react(event, job(event))
    await react(event, job(event))
    await react(event, job(event))
    assert [c[0] for c in fake.writes()] == ["update", "comment"]


async def test_events_caused_by_the_app_are_ignored(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    _leak(fake)
    event = page_event(actor=APP, version=3)
    await reactor(_secret_router())(event, job(event))
    assert fake.calls == []


async def test_current_version_written_by_the_app_is_ignored(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    page = fake.contents["1001"]
    fake.add(
        replace(
            page,
            body=f"<p>{AWS}</p>",
            version=3,
            version_message=edit_message("x"),
            author_id=APP,
        )
    )
    event = page_event(version=3, actor="")  # payload without an actor
    await reactor(_secret_router())(event, job(event))
    assert fake.writes() == []


@pytest.mark.parametrize("actor", ["user-1", ""])
async def test_the_edit_marker_typed_by_a_person_does_not_make_their_edit_the_apps(
    actor: str, fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    # the person's version, whose message starts with the marker (the payload may carry it)
    page = fake.contents["1001"]
    marked = edit_message("typo")
    fake.add(
        replace(
            page, body=f"<p>key {AWS}</p>", version=3, version_message=marked, author_id="user-1"
        )
    )
    event = page_event(version=3, actor=actor, message=marked)
    await reactor(_secret_router())(event, job(event))
    assert [c[0] for c in fake.writes()] == ["update", "comment"]
    assert AWS not in fake.contents["1001"].body


@pytest.mark.parametrize(
    "refusal",
    [
        NotFound("may view, may not update", status=404),  # what v2 answers
        Forbidden("only the author may edit", status=403),  # a missing scope
    ],
)
async def test_a_secret_in_a_comment_the_app_may_not_edit_is_still_reported(
    refusal: Exception, fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    """Users edit their own comments only: the redaction is refused (v2 answers 404 to a write
    one may not make on what one may view), which no retry can change. The author is told at
    once to remove it; the event does not dead-letter."""
    _comment(fake, f"<p>my key {AWS}</p>")
    fake.fail_next.append(refusal)
    event = comment_event(comment_id="5001")
    react = reactor(_secret_router())
    await react(event, job(event))  # no exception: nothing to retry, nothing dead
    (reply,) = fake.replied["5001"]
    assert "may not edit this comment" in reply and "redacted in a new version" not in reply
    assert AWS not in reply and 'ri:account-id="user-1"' in reply
    assert AWS in fake.contents["5001"].body  # left as it was
    await react(event, job(event))  # a re-run (replay): no second reply
    assert len(fake.replied["5001"]) == 1


async def test_a_write_refused_for_budget_leaves_nothing_to_look_for_on_the_re_run(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    """No budget for the comment: nothing was posted, so the deferred re-run posts it without
    first paying to list the comments for one an interrupted run might have left."""
    router = Router()

    @router.on("page.updated", name="note")
    async def note(event: Event, ctx: ReactionContext) -> None:
        await ctx.comment("<p>noted</p>")

    fake.fail_next.append(BudgetExhausted(retry_at=2e9, now=1e9, reason="quota"))
    event = page_event()
    react = reactor(router)
    with pytest.raises(Defer):
        await react(event, job(event))
    fake.calls.clear()
    await react(event, job(event))
    assert [c[0] for c in fake.calls] == ["comment"]  # no "list-comments" first
    assert len(fake.comments["1001"]) == 1


async def test_the_echo_of_a_first_write_is_ignored_by_any_process_however_soon(
    fake: FakeConfluence, job: Job, redis: Redis, settings: Settings
) -> None:
    """A fresh site: nobody knows the app's account yet. The app replies to a comment; the
    echo of that reply (a new comment, so not held back by per-content order) is picked up by
    another worker process while the first run is still going. It must be ignored there."""
    router = Router()
    echoes: list[Event] = []
    acted: list[str] = []

    async def client_for(event: Event, job_: JobContext) -> FakeConfluence:
        return fake

    other_process = Reactor(router, client_for, ReactorOptions())  # learns from Redis only
    this_process = Reactor(router, client_for, ReactorOptions())

    @router.on("comment.created", name="ack")
    async def ack(event: Event, ctx: ReactionContext) -> None:
        acted.append(event.content_id)
        await ctx.reply(event.content_id, "<p>ack</p>")
        if not echoes:  # the reply's echo arrives now, while this run goes on
            echo = comment_event(comment_id="9000", actor=APP)
            echoes.append(echo)
            await other_process(echo, job(echo))

    # The other process has looked the app's accounts up moments ago: none known yet.
    ledger = EffectLedger(redis, settings.redis_prefix)
    assert await other_process.app_accounts(ledger, "tenant-a") == frozenset()
    first = comment_event(comment_id="5001")
    await this_process(first, job(first))
    assert acted == ["5001"]  # the echo (9000) ran nothing
    assert [c for c in fake.writes() if c[0] == "reply"] == [("reply", "5001")]


def acking(fake: FakeConfluence) -> tuple[Router, ClientFactory, list[str]]:
    """A router whose one reaction replies "ack" to every new comment, the client factory
    serving ``fake``, and the list of the comments it acted on."""
    router = Router()
    acted: list[str] = []

    async def client_for(event: Event, job_: JobContext) -> FakeConfluence:
        return fake

    @router.on("comment.created", name="ack")
    async def ack(event: Event, ctx: ReactionContext) -> None:
        acted.append(event.content_id)
        await ctx.reply(event.content_id, "<p>ack</p>")

    return router, client_for, acted


async def test_the_echo_of_a_write_under_the_site_s_other_tenant_name_is_ignored(
    fake: FakeConfluence, job: Job, redis: Redis, settings: Settings
) -> None:
    """One site, two tenant names: the app replies under its Connect clientKey, then the
    Connect install goes and the Forge installation serves the site as ``forge:<cloudId>``.
    The echo of the reply, delivered under the new name, is the app's own write all the same."""
    router, client_for, acted = acking(fake)
    first = comment_event(comment_id="5001")
    await Reactor(router, client_for, ReactorOptions())(first, job(first))
    echo = replace(comment_event(comment_id="9000", actor=APP), tenant="forge:cloud-1")
    later_process = Reactor(router, client_for, ReactorOptions())  # knows nothing yet
    await later_process(echo, job(echo))
    assert acted == ["5001"]
    human = replace(comment_event(comment_id="9001"), tenant="forge:cloud-1")
    await later_process(human, job(human))
    assert acted == ["5001", "9001"]  # a person's comment there still gets its reaction


async def test_loop_guard_stops_a_reaction_that_retriggers_itself(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    router = Router()

    @router.on("page.updated", name="stamper")
    async def stamp(event: Event, ctx: ReactionContext) -> None:
        # not idempotent across events: every update gets another line
        await ctx.edit(lambda t, b: (t, b + "<p>stamp</p>"), what="stamp")

    react = reactor(router, loop_guard=LoopGuardPolicy(limit=3, window_seconds=60))
    for version in range(3, 10):
        event = page_event(version=version, actor="")  # actor unknown: only the guard helps
        fake.contents["1001"] = replace(fake.contents["1001"], version_message="", author_id="u")
        await react(event, job(event))
    assert len([c for c in fake.writes() if c[0] == "update"]) == 3


async def test_dry_run_records_and_writes_nothing(
    fake: FakeConfluence, job: Job, reactor: MakeReactor, redis: Redis, settings: Settings
) -> None:
    _leak(fake)
    event = page_event(version=3)
    await reactor(_secret_router(), dry_run=True)(event, job(event))
    assert fake.writes() == []
    runs = await EffectLedger(redis, settings.redis_prefix).dry_runs()
    assert [r["action"] for r in runs] == ["comment", "edit"]
    assert runs[1]["would_change"] is True
    assert AWS not in json.dumps(runs)


async def test_dry_run_per_rule(fake: FakeConfluence, job: Job, reactor: MakeReactor) -> None:
    router = Router()

    @router.on("page.updated", name="quiet", dry_run=True)
    async def quiet(event: Event, ctx: ReactionContext) -> None:
        await ctx.comment("<p>hello</p>")

    @router.on("page.updated", name="loud")
    async def loud(event: Event, ctx: ReactionContext) -> None:
        await ctx.comment("<p>hi</p>")

    event = page_event()
    await reactor(router)(event, job(event))
    assert [c.body for c in fake.comments["1001"]] == ["<p>hi</p>"]


async def test_a_failing_reaction_does_not_stop_the_others(
    fake: FakeConfluence, job: Job, reactor: MakeReactor, redis: Redis, settings: Settings
) -> None:
    router = Router()

    @router.on("page.updated", name="broken")
    async def broken(event: Event, ctx: ReactionContext) -> None:
        raise PermanentFailure("bad template")

    @router.on("page.updated", name="fine")
    async def fine(event: Event, ctx: ReactionContext) -> None:
        await ctx.comment("<p>ok</p>")

    event = page_event()
    with pytest.raises(PermanentFailure):
        await reactor(router)(event, job(event))
    assert len(fake.comments["1001"]) == 1
    counts = await EffectLedger(redis, settings.redis_prefix).counts()
    assert counts == {"broken:failed": 1, "fine:comment": 1}


async def test_a_retryable_failure_wins_over_a_confluence_404(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    """One reaction's 404 must not dead-letter an event whose other reaction hit a 502."""
    router = Router()

    @router.on("page.updated", name="gone")
    async def gone(event: Event, ctx: ReactionContext) -> None:
        raise NotFound("page not found", status=404)

    @router.on("page.updated", name="flaky")
    async def flaky(event: Event, ctx: ReactionContext) -> None:
        raise ServerError("bad gateway", status=502)

    event = page_event()
    with pytest.raises(ServerError):
        await reactor(router)(event, job(event))


async def test_a_failed_read_is_not_repeated_by_each_reaction(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    """Confluence failing a read: the event's run fails once, for one call's points."""
    router = Router()
    for name in ("a", "b", "c"):

        @router.on("page.updated", name=name)
        async def handler(event: Event, ctx: ReactionContext) -> None:
            await ctx.content()

    fake.fail_reads.append(ServerError("bad gateway", status=502))
    event = page_event()
    with pytest.raises(ServerError):
        await reactor(router)(event, job(event))
    assert [c for c in fake.calls if c[0] == "get"] == [("get", "page", "1001")]


async def test_defer_propagates_at_once(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    router = Router()
    ran: list[str] = []

    @router.on("page.updated", name="first")
    async def first(event: Event, ctx: ReactionContext) -> None:
        raise Defer(30, "budget")

    @router.on("page.updated", name="second")
    async def second(event: Event, ctx: ReactionContext) -> None:
        ran.append("second")

    event = page_event()
    with pytest.raises(Defer):
        await reactor(router)(event, job(event))
    assert ran == []


async def test_labels_are_fetched_once_and_only_when_needed(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    router = Router()
    seen: list[str] = []
    for name in ("a", "b"):

        @router.on("page.updated", name=name, label="rfc")
        async def handler(event: Event, ctx: ReactionContext) -> None:
            seen.append(ctx.reaction)

    fake.page_labels["1001"] = ["rfc"]
    event = page_event()
    await reactor(router)(event, job(event))
    assert seen == ["a", "b"]
    assert [c for c in fake.calls if c[0] == "labels"] == [("labels", "page", "1001")]
    fake.calls.clear()
    await reactor(router)(page_event("page_created"), job(event))
    assert fake.calls == []


async def test_secret_in_a_comment_is_redacted_and_the_author_gets_a_reply(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    _comment(fake, f"<p>use {AWS} for now</p>")
    event = comment_event()
    react = reactor(_secret_router())
    await react(event, job(event))
    await react(event, job(event))
    assert fake.contents["5001"].body == "<p>use [REDACTED aws-access-key-id] for now</p>"
    (reply,) = fake.replied["5001"]
    assert "this comment contained 1 credential" in reply and AWS not in reply
    assert [c[0] for c in fake.writes()] == ["update", "reply"]


async def test_later_reactions_still_run_after_an_earlier_one_edited(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    _leak(fake)
    router = _secret_router()
    seen: list[int] = []

    @router.on("page.*", name="after")
    async def after(event: Event, ctx: ReactionContext) -> None:
        seen.append((await ctx.content()).version)

    event = replace(page_event(version=3), version=None)  # e.g. a payload without a version
    await reactor(router)(event, job(event))
    assert seen == [4]  # the redacted version, read from the shared cache


async def test_report_survives_a_failure_between_redaction_and_comment(
    fake: FakeConfluence, job: Job, reactor: MakeReactor
) -> None:
    _leak(fake)
    original = fake.create_footer_comment
    calls = 0

    async def flaky(kind: Kind, content_id: str, body: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("worker lost its connection after the redaction")
        return await original(kind, content_id, body)

    fake.create_footer_comment = flaky  # type: ignore[method-assign]
    event = page_event(version=3)
    react = reactor(_secret_router())
    with pytest.raises(ConnectionError):
        await react(event, job(event))
    assert AWS not in fake.contents["1001"].body  # redacted, nobody told yet
    await react(event, job(event))  # the retry finds nothing left to redact...
    (comment,) = fake.comments["1001"]  # ...and still tells the author, once
    assert "AWS access key ID" in comment.body
    await react(event, job(event))
    assert len(fake.comments["1001"]) == 1


@pytest.mark.parametrize("what", ["stamp", "stamp  the\n page"])
async def test_interrupted_non_idempotent_edit_is_recognised_by_its_version_message(
    what: str,
    fake: FakeConfluence,
    job: Job,
    reactor: MakeReactor,
    redis: Redis,
    settings: Settings,
) -> None:
    """Also when its description has runs of whitespace, which the version message collapses."""
    router = Router()

    @router.on("page.updated", name="stamper")
    async def stamp(event: Event, ctx: ReactionContext) -> None:
        await ctx.edit(lambda t, b: (t, b + "<p>stamp</p>"), what=what)

    event = page_event()
    react = reactor(router)
    await react(event, job(event))
    (key,) = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}effect:*")]
    await redis.set(key, json.dumps({"state": "pending"}))  # died after the PUT
    await react(event, job(event))
    assert fake.contents["1001"].body.count("stamp") == 1
    assert " · ref " in fake.contents["1001"].version_message


async def test_an_edits_reference_typed_by_a_person_is_not_taken_for_the_apps_edit(
    fake: FakeConfluence, job: Job, reactor: MakeReactor, redis: Redis, settings: Settings
) -> None:
    """A run that died before its PUT, and meanwhile a person's version whose message carries
    the edit's reference (copied from the history): only the app's own version is its edit."""
    router = Router()

    @router.on("page.updated", name="stamper")
    async def stamp(event: Event, ctx: ReactionContext) -> None:
        await ctx.edit(lambda t, b: (t, b + "<p>stamp</p>"), what="stamp")

    event = page_event()
    react = reactor(router)
    original = fake.contents["1001"]
    await react(event, job(event))
    message = fake.contents["1001"].version_message
    (key,) = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}effect:*")]
    await redis.set(key, json.dumps({"state": "pending"}))  # died before the PUT
    fake.add(replace(original, version=3, version_message=message, author_id="user-1"))
    await react(event, job(event))
    assert fake.contents["1001"].body.count("stamp") == 1
    assert fake.contents["1001"].author_id == APP


async def test_accounts_learned_before_the_every_site_set_are_known_under_the_other_name(
    fake: FakeConfluence, job: Job, redis: Redis, settings: Settings
) -> None:
    """A site whose app account was learned for its Connect tenant only (before the set of
    every site's accounts existed): once that tenant's accounts are read again, the echo of a
    write under ``forge:<cloudId>`` is the app's own all the same."""
    router, client_for, acted = acking(fake)
    await redis.sadd(f"{settings.redis_prefix}app-accounts:tenant-a", APP)  # type: ignore[misc]
    first = comment_event(comment_id="5001")
    await Reactor(router, client_for, ReactorOptions())(first, job(first))
    echo = replace(comment_event(comment_id="9000", actor=APP), tenant="forge:cloud-1")
    await Reactor(router, client_for, ReactorOptions())(echo, job(echo))
    assert acted == ["5001"]


async def test_every_site_s_accounts_count_as_the_app_s_inside_reactions(
    redis: Redis, settings: Settings
) -> None:
    """Own-edit checks, comment dedupe and guard comments use the accounts the reactor reads:
    an account the app wrote with under the site's other tenant name is among them."""
    from workers.reactor import ACCOUNTS_CACHE_SECONDS

    ledger = EffectLedger(redis, settings.redis_prefix)
    await ledger.learn_app_accounts("tenant-a", {"connect-account"})
    now = [0.0]
    reactor = Reactor(Router(), client_for=None, options=ReactorOptions(), clock=lambda: now[0])  # type: ignore[arg-type]
    assert await reactor.app_accounts(ledger, "forge:cloud-1") == {"connect-account"}
    await ledger.learn_app_accounts("forge:cloud-1", {"forge-account"})
    now[0] += ACCOUNTS_CACHE_SECONDS + 0.1
    assert await reactor.app_accounts(ledger, "tenant-a") == {"connect-account", "forge-account"}


async def test_a_version_the_app_wrote_counts_as_seen_for_reconciliation(
    fake: FakeConfluence, job: Job, reactor: MakeReactor, redis: Redis, settings: Settings
) -> None:
    """Forge never delivers the app's own edits (ignoreSelf): without a mark, a sweep would
    take the version the app wrote for a missed change and react to it."""
    from app.reconcile_state import ReconcileState

    router = Router()

    @router.on("page.updated", name="stamper")
    async def stamp(event: Event, ctx: ReactionContext) -> None:
        await ctx.edit(lambda t, b: (t, b + "<p>stamp</p>"), what="stamp")

    event = page_event(version=2)
    await reactor(router)(event, job(event))
    assert fake.contents["1001"].version == 3
    state = ReconcileState(redis, settings.redis_prefix)
    types = ("page.created", "page.updated")
    [seen] = await state.seen(event.tenant, [(types, "1001", [2, 3, 4])])
    assert 3 in seen and 4 not in seen
    # A run that died between the edit and the mark: its rerun finds the edit and marks it.
    await redis.delete(*[k async for k in redis.scan_iter(match=f"{settings.redis_prefix}seen:*")])
    (key,) = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}effect:*")]
    await redis.set(key, json.dumps({"state": "pending"}))
    await reactor(router)(event, job(event))
    assert fake.contents["1001"].version == 3, "not edited again"
    [seen] = await state.seen(event.tenant, [(types, "1001", [3])])
    assert seen == {3}


async def test_an_effect_of_one_event_is_kept_while_the_event_may_run_again(
    fake: FakeConfluence, job: Job, redis: Redis, settings: Settings
) -> None:
    """Its record or its dead letter (which may be replayed), a day more, not a month; an
    effect shared by every event of the content (``once``) is kept longer."""
    router = Router()

    async def client_for(event: Event, job_: JobContext) -> FakeConfluence:
        return fake

    @router.on("comment.created", name="ack")
    async def ack(event: Event, ctx: ReactionContext) -> None:
        await ctx.reply(event.content_id, "<p>ack</p>")
        await ctx.comment("<p>seen a comment here</p>", once="first-comment")

    _comment(fake, "<p>hello</p>")
    event = comment_event(comment_id="5001")
    await Reactor(router, client_for, ReactorOptions())(event, job(event))
    ttls = [
        await redis.ttl(key)
        async for key in redis.scan_iter(match=f"{settings.redis_prefix}effect:*")
    ]
    longest = settings.event_retention_seconds + settings.dead_letter_retention_seconds
    assert len(ttls) == 2
    assert longest < min(ttls) <= longest + 24 * 3600
    assert max(ttls) > 29 * 24 * 3600
