"""The handler context: ``async def handler(event, ctx)`` gets one of these per reaction run.

``ctx.client`` is the Confluence client already authenticated and budgeted for the event's
tenant; ``ctx.log`` is bound to the event id and the reaction; ``ctx.dry_run`` says whether
writes are only recorded. The helpers (:meth:`comment`, :meth:`reply`, :meth:`inline_comment`,
:meth:`edit`, :meth:`update_comment`) are the safe way to write: each carries an idempotency
key (exactly once under re-runs), passes the loop guard, and honours dry-run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from app.atlassian.events import Event
from app.budget.hook import BudgetExhausted
from app.confluence.errors import RateLimited
from app.confluence.pages import is_own_version
from app.errors import Defer
from workers import storage
from workers.effects import EFFECT_TTL, Claim, EffectLedger, Pending, effect_key
from workers.ops import Comment, ConfluenceOps, Content, Kind, Transform

EDIT_REF_LENGTH = 12
# How long a run waits for another run's write of the same effect before it looks again
CLAIM_WAIT_MIN_SECONDS = 1.0
CLAIM_WAIT_MAX_SECONDS = 10.0


class Skip(Exception):
    """Nothing for this reaction to do with this event (raised from helpers, caught by the
    dispatcher, which goes on with the next reaction)."""


class OwnEdit(Skip):
    """The event's content is at a version the app itself wrote: nothing to react to."""


def kind_of(content_type: str) -> Kind:
    if content_type in ("blogpost", "blog"):
        return "blogpost"
    if content_type == "comment":
        return "comment"
    return "page"


def same_text(a: str, b: str) -> bool:
    """Two storage bodies say the same thing (markup and spacing aside)."""
    return " ".join(storage.parse(a).text.split()) == " ".join(storage.parse(b).text.split())


@dataclass
class EventCache:
    """Reads shared by all reactions of one event, so each is paid for once."""

    content: dict[tuple[str, str], Content] = field(default_factory=dict)
    # as first read for this event: the own-edit check must not see our later writes
    first: dict[tuple[str, str], Content] = field(default_factory=dict)
    # a read that failed: the next reaction gets the same error, not another call (the run
    # fails either way; each call costs points)
    failed: dict[tuple[str, str], Exception] = field(default_factory=dict)


@dataclass
class ReactionContext:
    event: Event
    client: ConfluenceOps
    ledger: EffectLedger
    log: Any
    reaction: str
    dry_run: bool
    app_accounts: frozenset[str] = frozenset()
    cache: EventCache = field(default_factory=EventCache)
    options: dict[str, Any] = field(default_factory=dict)
    _seq: Counter[str] = field(default_factory=Counter)

    @property
    def tenant(self) -> str:
        return self.event.tenant

    # reads -----------------------------------------------------------------------------
    async def get(self, kind: Kind, content_id: str) -> Content:
        key = (kind, content_id)
        if key not in self.cache.content:
            if key in self.cache.failed:
                raise self.cache.failed[key]
            try:
                self.cache.content[key] = await self.client.get_content(kind, content_id)
            except Exception as exc:
                self.cache.failed[key] = exc
                raise
            self.cache.first.setdefault(key, self.cache.content[key])
        return self.cache.content[key]

    async def content(self) -> Content:
        """The event's content; raises :class:`OwnEdit` when its current version is the app's."""
        key = await self._own_key()
        current = await self.get(*key)
        found = self.cache.first[key]
        # the author decides: the marker in the message is text anyone can type
        ours = is_own_version(found.author_id, self.app_accounts)
        # only a change of the content itself can be an echo of our edit (not a label event)
        change = (
            self.event.type.endswith((".created", ".updated")) and key[1] == self.event.content_id
        )
        same = self.event.version is None or self.event.version == found.version
        if ours and change and same:
            raise OwnEdit(f"{found.kind} {found.id} v{found.version} is the app's own edit")
        return current

    async def _own_key(self) -> tuple[Kind, str]:
        if self.event.content_type == "attachment":
            return await self.target()  # an attachment's own body is a file, not storage
        return kind_of(self.event.content_type), self.event.content_id

    async def target(self) -> tuple[Kind, str]:
        """The page or blog post the event is about (the container of comments, attachments)."""
        if self.event.content_type == "attachment":
            if not self.event.container_id:
                raise Skip("the attachment's page is unknown")
            return "page", self.event.container_id
        kind = kind_of(self.event.content_type)
        if kind != "comment":
            return kind, self.event.content_id
        if self.event.container_id:
            comment = await self.get("comment", self.event.content_id)
            return comment.parent_kind or "page", self.event.container_id
        comment = await self.get("comment", self.event.content_id)
        if comment.parent_id is None:
            raise Skip("the comment's page is unknown")
        return comment.parent_kind or "page", comment.parent_id

    async def remember(self, name: str, value: str) -> None:
        """Keep ``value`` for re-runs of this event by this reaction (never a secret)."""
        key = effect_key(self.tenant, self.event.id, self.reaction, name)
        await self.ledger.remember(key, value)

    async def recall(self, name: str) -> str | None:
        return await self.ledger.recall(effect_key(self.tenant, self.event.id, self.reaction, name))

    # writes ----------------------------------------------------------------------------
    def _key(self, action: str, once: str | None) -> str:
        if once is not None:
            return effect_key(self.tenant, self.reaction, once)
        self._seq[action] += 1
        return effect_key(self.tenant, self.event.id, self.reaction, action, str(self._seq[action]))

    async def _effect(
        self,
        action: str,
        once: str | None,
        detail: dict[str, Any],
        perform: Callable[[], Awaitable[Any]],
        already: Callable[[], Awaitable[Any]] | None = None,
        key: str | None = None,
        formerly: str | None = None,
    ) -> Any:
        key = key or self._key(action, once)
        # an effect of this event alone matters while the event may run again; a ``once``
        # effect, shared by every event of the content, for longer
        ttl = EFFECT_TTL if once is not None else self.ledger.event_seconds
        if formerly is not None and once is not None and not self.dry_run:
            # the same effect recorded under the key's earlier form: done is done
            old_state, old_result = await self.ledger.state(self._key(action, formerly))
            if old_state == "done":
                await self.ledger.done(key, old_result, ttl=ttl)
                return await self._duplicate(action, old_result)
        if self.dry_run:
            entry = {"event_id": self.event.id, "tenant": self.tenant, "reaction": self.reaction}
            await self.ledger.record_dry_run({**entry, "action": action, **detail})
            await self.ledger.count(self.reaction, "dry_run")
            self.log.info("dry run: would write", action=action, **detail)
            return None
        content_id = str(detail.get("content_id", self.event.content_id))
        # the usual way: one round trip before the write (claim), one after (applied)
        owner = self.event.id
        state, result = await self.ledger.claim(
            key, self.tenant, content_id, self.reaction, ttl=ttl, owner=owner
        )
        if state == "done":
            return await self._duplicate(action, result)
        if state == "pending":
            state, result = await self._resume(key, ttl, action, content_id, result, already)
            if state == "done":
                return result
        if state == "guard":
            self.log.warning("loop guard: too many writes to this content", action=action)
            await self.ledger.count(self.reaction, "loop_guard")
            return None
        try:
            result = await perform()
        except (BudgetExhausted, RateLimited):
            # Refused before anything was written (no budget for the call, or Confluence's
            # 429, which processes nothing): the re-run starts afresh instead of paying to
            # look for an effect that was never made.
            await self.ledger.release(key)
            raise
        # an effect of this event alone may be recorded with the end of the run (its content's
        # events run one at a time); a ``once`` effect is shared by events: recorded at once
        await self.ledger.applied(
            key, result, self.tenant, content_id, self.reaction, action, defer=once is None, ttl=ttl
        )
        if result is None:
            self.log.info("nothing to change", action=action)
            return None
        self.log.info("effect applied", action=action, result=result)
        return result

    async def _duplicate(self, action: str, result: Any) -> Any:
        self.log.info("effect already applied", action=action, result=result)
        await self.ledger.count(self.reaction, "duplicate")
        return result

    async def _resume(
        self,
        key: str,
        ttl: int,
        action: str,
        content_id: str,
        pending: Pending,
        already: Callable[[], Awaitable[Any]] | None,
    ) -> tuple[Claim, Any]:
        """A claim found pending: ``done`` and the effect when it is found in place, else
        ``new`` (the claim is now this run's) or ``guard``. Raises :class:`Defer` while another
        event's run holds a live lease on it: its write is in flight."""
        owner, now = self.event.id, time.time()
        if pending.owner not in (None, owner) and pending.live(now):
            # another event's run (a ``once`` effect they share) is writing it right now
            raise self._wait(action, pending, now)
        # this event's earlier attempt, or a run whose lease ran out: it stopped mid-write
        if already is not None:
            found = await already()
            if found is not None:
                await self.ledger.done(key, found, ttl=ttl)
                self.log.info("effect found in place after an interrupted run", action=action)
                return "done", found
        if not await self.ledger.allow_write(self.tenant, content_id, self.reaction):
            return "guard", None
        if not await self.ledger.take_over(key, pending, owner=owner, ttl=ttl):
            raise self._wait(action, pending, now)  # another run took it over just now
        return "new", None

    def _wait(self, action: str, pending: Pending, now: float) -> Defer:
        """Run the event again once the other run's write is recorded (or its lease ends)."""
        left = (pending.until or now) - now
        delay = min(max(left, CLAIM_WAIT_MIN_SECONDS), CLAIM_WAIT_MAX_SECONDS)
        self.log.info("effect being written by another run: waiting", action=action)
        return Defer(delay, f"{action}: another run is writing the same effect")

    def _same(self, comments: list[Comment], body: str) -> str | None:
        """The id of a comment by the app saying ``body`` (an earlier, interrupted attempt)."""
        for c in comments:
            ours = not self.app_accounts or c.author_id in self.app_accounts
            if ours and same_text(c.body, body):
                return c.id
        return None

    async def comment(self, body: str, *, once: str | None = None) -> str | None:
        """Post a footer comment on the event's page or blog post; its id (None in dry run)."""
        kind, cid = await self.target()

        async def already() -> str | None:
            return self._same(await self.client.footer_comments(kind, cid), body)

        detail = {"content_id": cid, "body": body}
        perform = lambda: self.client.create_footer_comment(kind, cid, body)  # noqa: E731
        result = await self._effect("comment", once, detail, perform, already)
        return None if result is None else str(result)

    async def reply(self, comment_id: str, body: str, *, once: str | None = None) -> str | None:
        """Reply to a comment."""

        async def already() -> str | None:
            return self._same(await self.client.replies(comment_id), body)

        detail = {"content_id": comment_id, "body": body}
        perform = lambda: self.client.reply(comment_id, body)  # noqa: E731
        result = await self._effect("reply", once, detail, perform, already)
        return None if result is None else str(result)

    async def inline_comment(
        self,
        selection: str,
        body: str,
        *,
        count: int = 1,
        index: int = 0,
        once: str | None = None,
        formerly: str | None = None,
    ) -> str | None:
        """Comment on the ``index``-th of ``count`` occurrences of ``selection`` in the page.

        ``formerly``: an earlier ``once`` of the same comment (a key whose form changed); one
        recorded done under it is not posted again."""
        kind, cid = await self.target()

        async def already() -> str | None:
            return self._same(await self.client.inline_comments(kind, cid), body)

        detail = {"content_id": cid, "selection": selection, "index": index, "body": body}

        async def perform() -> str:
            return await self.client.create_inline_comment(kind, cid, body, selection, count, index)

        result = await self._effect(
            "inline_comment", once, detail, perform, already, formerly=formerly
        )
        return None if result is None else str(result)

    async def update_comment(self, comment_id: str, body: str, *, once: str | None = None) -> None:
        detail = {"content_id": comment_id, "body": body}

        async def perform() -> str:
            await self.client.update_comment(comment_id, body)
            return comment_id

        await self._effect("update_comment", once, detail, perform)

    async def _wrote(self, kind: Kind, content_id: str, version: int) -> None:
        """Mark a version the app wrote as seen (for reconciliation); the edit stands anyway."""
        try:
            await self.ledger.wrote_version(self.tenant, kind, content_id, version)
        except (RedisError, OSError) as exc:
            self.log.warning("own version not marked as seen", error=type(exc).__name__)

    async def edit(
        self,
        transform: Transform,
        *,
        what: str,
        kind: Kind | None = None,
        content_id: str | None = None,
        once: str | None = None,
    ) -> int | None:
        """Apply a pure transform through the client's safe update; the new version or None."""
        kind = kind or kind_of(self.event.content_type)
        cid = content_id or self.event.content_id
        detail: dict[str, Any] = {"content_id": cid, "kind": kind, "what": what}
        if self.dry_run:
            current = await self.get(kind, cid)
            title, body = transform(current.title, current.body)
            detail["would_change"] = (title, body) != (current.title, current.body)

        key = self._key("edit", once)
        # the version message names the effect, so a re-run can see the edit already made;
        # whitespace collapsed as the message is written (pages.edit_message), or it never
        # matches again
        note = " ".join(f"{what} · ref {key[:EDIT_REF_LENGTH]}".split())

        async def perform() -> int | None:
            updated = await self.client.update_content(kind, cid, transform, note)
            if updated is None:
                return None
            self.cache.content[(kind, cid)] = updated
            await self._wrote(kind, cid, updated.version)
            return updated.version

        async def already() -> int | None:
            current = await self.client.get_content(kind, cid)
            if note not in current.version_message:
                return None
            if self.app_accounts and not is_own_version(current.author_id, self.app_accounts):
                return None  # a person's version whose message carries the reference
            await self._wrote(kind, cid, current.version)  # the run that made it may not have
            return current.version

        result = await self._effect("edit", once, detail, perform, already, key)
        return None if result is None else int(result)
