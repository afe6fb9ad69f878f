"""The reactions' dispatcher: ``await reactor(event, job)`` runs every matching reaction.

It implements :class:`workers.dispatch.Dispatch`. Order of work for one event: loop prevention
on the event itself; match registrations (fetching labels once, only if a label filter needs
them); build one :class:`ReactionContext` per reaction sharing a read cache; run the handlers.
A failing reaction does not stop the others; afterwards the first failure is raised so the job
layer retries (re-runs are safe: effects are idempotent). ``Defer`` (budget) propagates at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from app.atlassian.events import Event
from app.confluence.errors import is_permanent
from app.errors import Defer, PermanentFailure
from workers.context import EventCache, OwnEdit, ReactionContext, Skip, kind_of
from workers.dispatch import JobContext
from workers.effects import LEASE_MARGIN_SECONDS, EffectLedger, LoopGuardPolicy, effect_seconds
from workers.loops import ignore_reason
from workers.ops import ConfluenceOps
from workers.routing import Registration, Router

ACCOUNTS_CACHE_SECONDS = 5.0
ACCOUNTS_CACHE_MAX = 10_000
ClientFactory = Callable[[Event, JobContext], Awaitable[ConfluenceOps]]


@dataclass(frozen=True, slots=True)
class ReactorOptions:
    dry_run: bool = False
    app_accounts: frozenset[str] = frozenset()
    loop_guard: LoopGuardPolicy = field(default_factory=LoopGuardPolicy)


class Reactor:
    """Routes events to reactions; one instance per worker process.

    The app's accounts learned per tenant (:meth:`EffectLedger.app_accounts`) are read from
    Redis at most every :data:`ACCOUNTS_CACHE_SECONDS` per tenant; what this process learns it
    knows at once. Each write's author is learned (in Redis) as soon as the write returns, and
    an actor the cache does not know is looked up in Redis before the event runs, so the echo
    of a write is ignored by whichever process picks it up, however soon.
    """

    def __init__(
        self,
        router: Router,
        client_for: ClientFactory,
        options: ReactorOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.client_for = client_for
        self.options = options
        self.clock = clock
        self._accounts: dict[str, tuple[float, frozenset[str]]] = {}

    async def app_accounts(self, ledger: EffectLedger, tenant: str) -> frozenset[str]:
        cached = self._accounts.get(tenant)
        now = self.clock()
        if cached is not None and cached[0] > now:
            return cached[1]
        accounts = self.options.app_accounts | await ledger.app_accounts(tenant)
        if len(self._accounts) >= ACCOUNTS_CACHE_MAX:
            self._accounts.clear()
        self._accounts[tenant] = (now + ACCOUNTS_CACHE_SECONDS, accounts)
        return accounts

    async def learn_app_accounts(
        self, ledger: EffectLedger, tenant: str, accounts: frozenset[str]
    ) -> None:
        if accounts:
            cached = self._accounts.get(tenant)
            if cached is not None and accounts <= cached[1]:
                return
            await ledger.learn_app_accounts(tenant, set(accounts))
            if cached is not None:
                self._accounts[tenant] = (cached[0], cached[1] | accounts)

    async def _learn_writer(self, ledger: EffectLedger, tenant: str, account: str) -> None:
        await self.learn_app_accounts(ledger, tenant, frozenset({account}))

    async def _matching(
        self,
        event: Event,
        client: ConfluenceOps,
        candidates: list[tuple[Registration, bool | None]],
    ) -> list[Registration]:
        if all(verdict for _, verdict in candidates):
            return [reg for reg, _ in candidates]
        labels = await client.labels(kind_of(event.content_type), event.content_id)
        return [reg for reg, verdict in candidates if verdict or reg.match(event, labels)]

    async def __call__(self, event: Event, job: JobContext) -> None:
        candidates = self.router.candidates(event)
        if not candidates:
            job.log.debug("no reaction matches")
            return
        ledger = EffectLedger(
            job.redis,
            job.settings.redis_prefix,
            self.options.loop_guard,
            after=job.after,
            seen_seconds=job.settings.dedupe_window_seconds,
            event_seconds=effect_seconds(job.settings),
            lease_seconds=job.settings.job_timeout_seconds + LEASE_MARGIN_SECONDS,
        )
        accounts = await self.app_accounts(ledger, event.tenant)
        # Never trust a cached "not ours": another run may have just learned the account from
        # the write this event echoes (one set lookup; a hit refreshes the cache).
        actor = event.actor
        if actor and actor not in accounts and await ledger.is_app_account(event.tenant, actor):
            await self.learn_app_accounts(ledger, event.tenant, frozenset({actor}))
            accounts = accounts | {actor}
        reason = ignore_reason(event, accounts)
        if reason is not None:
            job.log.info("event ignored", reason=reason)
            return
        client = await self.client_for(event, job)
        client.on_writer = partial(self._learn_writer, ledger, event.tenant)
        try:
            await self._run(event, job, client, ledger, accounts, candidates)
        finally:
            await self.learn_app_accounts(
                ledger, event.tenant, frozenset(client.writers - accounts)
            )

    async def _run(
        self,
        event: Event,
        job: JobContext,
        client: ConfluenceOps,
        ledger: EffectLedger,
        accounts: frozenset[str],
        candidates: list[tuple[Registration, bool | None]],
    ) -> None:
        matching = await self._matching(event, client, candidates)
        cache = EventCache()
        failures: list[Exception] = []
        for reg in matching:
            dry_run = self.options.dry_run or bool(reg.dry_run)
            ctx = ReactionContext(
                event=event,
                client=client,
                ledger=ledger,
                log=job.log.bind(reaction=reg.name, dry_run=dry_run),
                reaction=reg.name,
                dry_run=dry_run,
                app_accounts=accounts,
                cache=cache,
                options=reg.options,
            )
            try:
                await reg.handler(event, ctx)
            except OwnEdit as exc:
                job.log.info("event ignored", reason=str(exc))
                return
            except Skip as exc:
                ctx.log.info("reaction skipped", reason=str(exc))
                continue
            except Defer:
                raise
            except Exception as exc:
                ctx.log.warning("reaction failed", error=f"{type(exc).__name__}: {exc}")
                await ledger.count(reg.name, "failed")
                failures.append(exc)
        if failures:
            retryable = [
                f for f in failures if not isinstance(f, PermanentFailure) and not is_permanent(f)
            ]
            raise (retryable or failures)[0]
