"""One Redis connection shared by concurrent callers: commands pipelined, replies in order.

The event queue sends its batches of puts through it (:mod:`app.queue`). A pooled client checks
a connection out and back in for every command, and each check-out probes the socket with a
zero timeout: one more turn of the event loop, a timer and an exception per command. Here a
command is written at once, behind those still waiting for their replies, and one reader hands
each reply to the command it answers (Redis answers a connection's commands in the order it
read them).

The connection is checked out of the client's pool on first use and held: same address, TLS,
credentials, database and Sentinel discovery as every other command, and the client's
``aclose`` closes it with the rest of the pool. A connection that fails (reset, closed by
Redis, a write error) fails every command waiting on it with that error and goes back to the
pool closed; the next call checks one out again. :meth:`SharedConnection.drop` does the same on
purpose when a caller's bound passed without a reply: a link that went silent raises nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError


class _Link:
    """A held connection and the replies it still owes, oldest first."""

    __slots__ = ("conn", "dead", "reader", "waiting")

    def __init__(self, conn: AbstractConnection) -> None:
        self.conn = conn
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.reader: asyncio.Task[None] | None = None
        self.dead = False


class SharedConnection:
    """Pipelines the commands of concurrent callers on one connection of ``redis``'s pool."""

    def __init__(self, redis: Redis) -> None:
        if redis.single_connection_client:
            raise ValueError("a shared connection needs a pooled Redis client")
        self._pool = redis.connection_pool
        self._link: _Link | None = None
        self._opening = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def call(self, command: bytes) -> Any:
        """Send one command already encoded in the Redis protocol and return its reply.

        An error reply raises as redis-py raises it (``NoScriptError``, ``ResponseError``);
        a connection that fails raises its ``ConnectionError`` (or ``OSError``).
        """
        link = self._link
        if link is None or not link.conn.is_connected:
            if link is not None:  # closed under us (the client's aclose, a pool reset)
                self._fail(link, RedisConnectionError("the connection to Redis was closed"))
            link = await self._open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.waiting.append(future)
        try:
            # Synchronous up to the write (the connection is open, no health check): commands
            # reach the socket in the order their futures joined ``waiting``.
            await link.conn.send_packed_command(command, check_health=False)
        except BaseException as exc:
            future.cancel()
            self._fail(link, exc)
            raise
        if link.reader is None and not link.dead:
            link.reader = asyncio.get_running_loop().create_task(self._read(link))
        return await future

    def drop(self) -> None:
        """Give up the current connection: what waits on it fails, the next call reconnects."""
        link = self._link
        if link is not None:
            self._fail(link, RedisConnectionError("no reply from Redis within the bound"))

    async def _open(self) -> _Link:
        async with self._opening:
            if self._link is None:
                self._link = _Link(await self._pool.get_connection())
            return self._link

    async def _read(self, link: _Link) -> None:
        waiting = link.waiting
        try:
            while waiting:
                try:
                    reply: Any = await link.conn.read_response()
                except ResponseError as exc:  # an error reply: the connection is still in step
                    reply = exc
                future = waiting.popleft()
                if future.done():
                    continue  # its caller gave up (timeout, cancellation)
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except BaseException as exc:
            self._fail(link, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            link.reader = None

    def _fail(self, link: _Link, exc: BaseException) -> None:
        if link.dead:
            return
        link.dead = True
        if self._link is link:
            self._link = None
        error = (
            exc
            if isinstance(exc, RedisError | OSError)
            else RedisConnectionError("the connection to Redis was lost")
        )
        while link.waiting:
            future = link.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        reader = link.reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        task = asyncio.get_running_loop().create_task(self._give_back(link.conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _give_back(self, conn: AbstractConnection) -> None:
        try:
            await conn.disconnect(nowait=True)
        finally:
            # KeyError, ValueError: the pool was reset meanwhile and forgot this connection.
            with contextlib.suppress(KeyError, ValueError):
                await self._pool.release(conn)
