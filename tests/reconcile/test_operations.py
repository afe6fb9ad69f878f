"""The operator command, the worker's cron tick, one sweep at a time, and budget yielding."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from app import cli
from app.budget.hook import BudgetExhausted, Priority
from app.budget.redis_budget import RedisBudget
from app.reconcile_cli import ProgressLine, parse_since
from app.reconcile_state import Progress, ReconcileState
from app.settings import Settings
from app.tenants import Tenant, TenantStore
from tests.reconcile.conftest import Recorder, Stack
from workers import reconcile_runtime
from workers.main import build_worker
from workers.reconcile import SweepReport, Target

Drain = Any


def _env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("REACTOR_REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("REACTOR_REDIS_PREFIX", settings.redis_prefix)
    assert settings.secret_key is not None
    monkeypatch.setenv("REACTOR_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("REACTOR_LOG_LEVEL", "error")
    monkeypatch.chdir(settings.state_dir.parent)  # no stray .env file


async def _reactor(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_reactor_reconcile_recovers_an_outage_window(
    stack: Stack,
    redis: Redis,
    drain_queue: Drain,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _env(monkeypatch, stack.settings)
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await stack.faults(webhook_drop=1.0)  # the service was down: nothing arrived
    for n in range(4):
        await stack.edit(await stack.create(f"Outage {n}"), "second")
    await stack.drain()

    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", since) == 0
    out, err = capsys.readouterr()
    assert "[########################] 100%" in err  # the progress display reached the end
    assert f"tenant {stack.tenant}: changes since" in out and "(complete)" in out
    assert "versions never seen            9" in out  # 4 pages x 2 versions + the homepage
    assert "reconcile events enqueued      9" in out

    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions() == stack.expected_versions()

    # run again: everything is known now; the periodic sweep's watermark was not touched
    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", since, "--json") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["complete"] and summary["hits"] == 5 and summary["enqueued"] == 0
    assert await ReconcileState(redis, stack.settings.redis_prefix).watermark(stack.tenant) is None


async def test_reactor_reconcile_reaches_back_no_further_than_the_install(
    stack: Stack,
    redis: Redis,
    drain_queue: Drain,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What changed before the app was installed is not the app's to react to: a --since
    from before the install sweeps from the install (as the periodic sweep does), and says so;
    pages that existed then are not taken for new ones."""
    _env(monkeypatch, stack.settings)
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await stack.faults(webhook_drop=1.0)
    for n in range(3):
        await stack.create(f"Before {n}")
    await stack.drain()
    await asyncio.sleep(1.1)
    installed = time.time()  # the app came after those pages
    key = f"{stack.settings.redis_prefix}tenant:client:{stack.tenant}"
    await redis.hset(key, "installed_at", repr(installed))  # type: ignore[misc]
    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", since) == 0
    out, err = capsys.readouterr()
    assert "--since is before the install; sweeping from" in err
    assert "reconcile events enqueued      0" in out
    recorder = Recorder()
    await drain_queue(recorder)
    assert [e for e in recorder.events if e.source == "reconcile"] == []


async def test_reactor_reconcile_refuses_bad_input(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, stack.settings)
    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", "last week") == 2
    assert "--since: 'last week' is not an ISO time" in capsys.readouterr().err
    assert await _reactor("reconcile", "--tenant", "nobody", "--since", "2026-01-01") == 2
    assert "no installed tenant 'nobody'" in capsys.readouterr().err
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", future) == 2


def test_since_and_progress_line() -> None:
    assert parse_since("2026-11-27T09:30Z") == parse_since("2026-11-27 09:30")
    assert parse_since("2026-11-27T10:30+01:00") == parse_since("2026-11-27T09:30:00Z")

    class Sink:
        text = ""

        def write(self, value: str) -> None:
            self.text += value

        def flush(self) -> None:
            pass

    sink = Sink()
    line = ProgressLine(0, 100_000, sink)
    line(SweepReport("t", "manual", 0, upper=75_000, items=3, pages=1))
    assert sink.text.startswith("[######..................]  25%  pages 1  hits 3")


async def test_the_cron_tick_sweeps_due_tenants_once_per_interval(
    stack: Stack, redis: Redis, drain_queue: Drain
) -> None:
    await stack.faults(webhook_drop=1.0)
    page = await stack.create("Ticked")
    await stack.drain()
    ctx = {"settings": stack.settings, "redis": redis}
    first = await reconcile_runtime.tick(ctx)
    assert first[stack.tenant]["complete"] and first[stack.tenant]["enqueued"] == 2
    assert await reconcile_runtime.tick(ctx) == {}  # not due again within the interval
    off = {"settings": stack.settings.model_copy(update={"reconcile_interval_seconds": 0})}
    assert await reconcile_runtime.tick(off | {"redis": redis}) == {}
    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions()[(page, 1)] == 1


def test_the_worker_runs_the_tick_every_minute_except_in_burst_mode(settings: Settings) -> None:
    worker = build_worker(settings, handle_signals=False, dispatch=Recorder())
    job, _purge = worker.cron_jobs
    assert (
        job.name == f"{settings.redis_prefix}reconcile" and job.coroutine is reconcile_runtime.tick
    )
    assert job.minute is None and job.second == 7  # every minute
    burst = build_worker(settings, burst=True, handle_signals=False, dispatch=Recorder())
    assert burst.cron_jobs == []


async def test_one_sweep_of_a_tenant_at_a_time(stack: Stack, redis: Redis) -> None:
    state = ReconcileState(redis, stack.settings.redis_prefix)
    token = await state.lock(stack.tenant, 30)
    assert token is not None
    async with reconcile_runtime.runtime(redis, stack.settings) as rt:
        report = await rt.sweeper.run(Target(stack.tenant, 0))
        assert report.busy and not report.complete
        await state.unlock(stack.tenant, "someone-else")  # only the holder releases it
        assert (await rt.sweeper.run(Target(stack.tenant, 0))).busy
        await state.unlock(stack.tenant, token)
        assert (await rt.sweeper.run(Target(stack.tenant, 0))).complete


async def test_sweeps_yield_to_reactions_when_the_budget_runs_low(
    stack: Stack, redis: Redis
) -> None:
    settings = stack.settings.model_copy(
        update={
            "budget_points_per_hour": 1000,
            "budget_reserve_fraction": 0.1,
            "budget_reserve_release_seconds": 0.0,
            "budget_pacing": False,
            "budget_burst_per_second": 0.0,
            "budget_max_wait_seconds": 0.0,
        }
    )
    budget = RedisBudget(redis, settings)
    await budget.reserve("busy-tenant", 850, Priority.REACTION)  # reactions spent most of it
    async with reconcile_runtime.runtime(redis, settings, budget=budget) as rt:
        (target,) = await rt.targets()
        report = await rt.sweeper.run(target)
    assert report.yielded and report.budget and report.retry_in >= 0 and not report.complete
    saved = await ReconcileState(redis, settings.redis_prefix).progress("auto", stack.tenant)
    assert saved is not None and saved.items == 0  # resumes at the next tick
    # reactions still get points the sweep could not take
    await budget.reserve(stack.tenant, 40, Priority.REACTION)
    with pytest.raises(BudgetExhausted):
        await budget.reserve(stack.tenant, 40, Priority.RECONCILE)


async def test_reactor_reconcile_waits_for_budget_and_finishes(
    stack: Stack,
    drain_queue: Drain,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _env(monkeypatch, stack.settings)
    monkeypatch.setenv("REACTOR_BUDGET_BURST_PER_SECOND", "1")  # one Confluence call a second
    monkeypatch.setenv("REACTOR_BUDGET_MAX_WAIT_SECONDS", "0")  # never wait inside the call
    since = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    await stack.faults(webhook_drop=1.0)
    page = await stack.create("Slowly")
    await stack.drain()
    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", since) == 0
    out, err = capsys.readouterr()
    assert "for budget" in err and "(complete)" in out
    recorder = Recorder()
    await drain_queue(recorder)
    assert recorder.versions()[(page, 1)] == 1


async def test_the_tick_goes_most_urgent_first_and_survives_a_failing_tenant(
    stack: Stack, redis: Redis
) -> None:
    tenants = TenantStore(redis, stack.settings)
    # a tenant whose secret the site does not know: every call it makes is refused
    await tenants.upsert(
        Tenant(client_key="stale", shared_secret="not-the-secret", base_url=f"{stack.sim_url}/wiki")
    )
    state = ReconcileState(redis, stack.settings.redis_prefix)
    await state.set_watermark(stack.tenant, 1)  # swept long ago
    await state.save_progress("auto", "stale", Progress(since=1, started=2))  # unfinished
    async with reconcile_runtime.runtime(redis, stack.settings) as rt:
        assert [t.tenant for t in await rt.due_targets()] == ["stale", stack.tenant]
        assert await reconcile_runtime.sweep_due(rt, seconds=0) == {}  # past its deadline
        done = await reconcile_runtime.sweep_due(rt)
    assert done["stale"] == {"error": "Unauthorized"}
    assert done[stack.tenant]["complete"]


class _SlowSearch:
    """A sweep client whose one search call outlasts the sweep lock (a long budget wait)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = self.most = 0

    async def search_page(self, cql: str, next_url: str | None, limit: int = 50) -> Any:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.active -= 1
        return [], None


async def test_the_sweep_lock_is_held_while_one_call_outlasts_it(
    redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewed only between pages, the lock expired during a long call and a second sweep of
    the tenant ran alongside (doubling Confluence calls when budget is scarce)."""
    import time

    from app.queue import EventQueue
    from workers import reconcile
    from workers.reconcile import Sweeper

    monkeypatch.setattr(reconcile, "LOCK_SECONDS", 0.4)
    client = _SlowSearch(1.0)

    async def client_for(tenant: str) -> Any:
        return client

    sweeper = Sweeper(
        ReconcileState(redis, settings.redis_prefix), EventQueue(redis, settings), client_for,
        settings,
    )  # fmt: skip
    since = int(time.time() * 1000) - 3_600_000
    target = Target("site-a", since)
    manual = asyncio.create_task(sweeper.run(target, slot="manual", since_ms=since))
    await asyncio.sleep(0.6)  # past the lock's first term
    periodic = await sweeper.run(target, slot="auto")
    assert periodic.busy, "the tenant's sweep still holds the lock"
    assert (await manual).complete and client.most == 1


async def test_reactor_reconcile_reports_a_confluence_error_in_one_line(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, stack.settings)
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await stack.create("Unreachable")
    await stack.faults(error_rate=1.0)  # every call answered 5xx
    assert await _reactor("reconcile", "--tenant", stack.tenant, "--since", since) == 1
    out, err = capsys.readouterr()
    said = [line for line in err.splitlines() if line.startswith("reactor:")]
    said = [line for line in said if "before the install" not in line]  # the window's start
    assert len(said) == 1 and "Traceback" not in err, err
    assert said[0].startswith("reactor: Confluence error: ServerError 5")
    assert "run the same command again (same --since) to resume" in said[0]
    assert "complete" not in out
