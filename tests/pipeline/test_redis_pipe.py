"""SharedConnection: concurrent commands pipelined on one held connection, replies in order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from app import redis as redis_conn
from app.redis_pipe import SharedConnection
from app.settings import Settings


def encode(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def connections_named(redis: Redis, name: str) -> int:
    return sum(1 for c in await redis.client_list() if c.get("name") == name)


@pytest.fixture
async def named(settings: Settings) -> AsyncIterator[tuple[Redis, str]]:
    """A client of the test's own whose connections carry a name unique to it (to count them)."""
    name = f"pipe-{uuid.uuid4().hex[:8]}"
    client = redis_conn.connect(str(settings.redis_url), client_name=name)
    try:
        yield client, name
    finally:
        await client.aclose()


async def test_concurrent_calls_share_one_connection_and_get_their_own_replies(
    redis: Redis, named: tuple[Redis, str]
) -> None:
    client, name = named
    shared = SharedConnection(client)
    replies = await asyncio.gather(*(shared.call(encode("ECHO", f"m{n}")) for n in range(300)))
    assert replies == [f"m{n}".encode() for n in range(300)]
    assert await connections_named(redis, name) == 1, "one held connection"


async def test_an_error_reply_fails_only_its_own_call(redis: Redis) -> None:
    shared = SharedConnection(redis)
    calls = [
        shared.call(encode("ECHO", "before")),
        shared.call(encode("INCRBY", "not-a-key-we-made", "not-a-number")),
        shared.call(encode("ECHO", "after")),
    ]
    before, failed, after = await asyncio.gather(*calls, return_exceptions=True)
    assert (before, after) == (b"before", b"after")
    assert isinstance(failed, ResponseError)


async def test_a_connection_redis_closes_fails_its_call_and_the_next_call_reconnects(
    redis: Redis, named: tuple[Redis, str]
) -> None:
    client, name = named
    shared = SharedConnection(client)
    assert await shared.call(encode("ECHO", "first")) == b"first"
    for entry in await redis.client_list():
        if entry.get("name") == name:
            await redis.client_kill_filter(_id=entry["id"])
    with pytest.raises((RedisConnectionError, OSError)):
        await shared.call(encode("ECHO", "lost"))
    assert await shared.call(encode("ECHO", "again")) == b"again"
    assert await connections_named(redis, name) == 1


async def test_a_connection_the_pool_closed_is_replaced_before_writing(
    redis: Redis, named: tuple[Redis, str]
) -> None:
    client, name = named
    shared = SharedConnection(client)
    assert await shared.call(encode("ECHO", "first")) == b"first"
    await client.connection_pool.disconnect()  # what a reset or the client's aclose does
    replies = await asyncio.gather(*(shared.call(encode("ECHO", str(n))) for n in range(20)))
    assert replies == [str(n).encode() for n in range(20)]
    assert await connections_named(redis, name) == 1


async def test_drop_fails_what_waits_and_gives_the_connection_back(silent_server: int) -> None:
    # A hung server would not answer the handshake either: a connection that sends none.
    client = redis_conn.connect(
        f"redis://127.0.0.1:{silent_server}/0", lib_name=None, lib_version=None
    )
    try:
        shared = SharedConnection(client)
        waiting = [asyncio.ensure_future(shared.call(encode("ECHO", str(n)))) for n in range(3)]
        await asyncio.sleep(0.2)
        assert not any(w.done() for w in waiting), "nothing answers"
        shared.drop()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results)
        await asyncio.sleep(0.05)
        pool = client.connection_pool
        assert not pool._in_use_connections, "the held connection went back to the pool"  # type: ignore[attr-defined]
    finally:
        await client.aclose()


async def test_closing_the_client_closes_the_held_connection(
    redis: Redis, named: tuple[Redis, str]
) -> None:
    client, name = named
    shared = SharedConnection(client)
    assert await shared.call(encode("ECHO", "x")) == b"x"
    assert await connections_named(redis, name) == 1
    await client.aclose()
    for _ in range(50):
        if await connections_named(redis, name) == 0:
            break
        await asyncio.sleep(0.02)
    assert await connections_named(redis, name) == 0


def test_a_single_connection_client_is_refused(settings: Settings) -> None:
    client = Redis.from_url(str(settings.redis_url), single_connection_client=True)
    with pytest.raises(ValueError, match="pooled"):
        SharedConnection(client)
