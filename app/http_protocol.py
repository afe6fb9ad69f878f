"""uvicorn's httptools protocol with bounds on what one client can make the web process hold.

uvicorn keeps a request's URL and headers without limit, and times a connection out only once
it has been answered (keep-alive). This protocol adds, per connection:

- a URL longer than ``max_url_bytes`` is answered 414, and its connection closed;
- headers larger than ``max_header_bytes`` (each counted as its name and value plus
  ``HEADER_OVERHEAD``, about what the server keeps for one header) are answered 431 and closed;
- a request line and headers not complete ``head_timeout`` seconds after the connection opened
  (after its first byte, for a later request on a kept-alive connection) close the connection;
- a body not complete ``body_timeout`` seconds after its headers closes the connection: the
  app's ``receive()`` then gets ``http.disconnect``, so nothing of that request is stored;
- a connection beyond ``max_connections`` open ones is answered 503 and closed at once.

Both timeouts answer 408 first when part of a request came and nothing of its response was
sent. The hot path gets an integer addition and comparison per header and for the URL; a
request that arrives whole in one read arms no timer (the connection's first one is set when it
opens, and cancelled by that read).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.web.security import PLAIN_HEADERS, PLAIN_HEADERS_HTTPS

# What one header costs besides its name and value: a tuple and two bytes objects in uvicorn's
# list (about 130 bytes). Without it, 64 KiB of one-letter headers would cost some 2 MB.
HEADER_OVERHEAD = 128

# What a connection is reading. ``_timed`` says which of them the armed timer is for.
_IDLE = 0  # nothing: a response is on its way, or uvicorn's keep-alive timer runs
_HEAD = 1  # a request line and headers (from the connection's opening, for its first request)
_BODY = 2  # a request's body
_QUEUED = 3  # (timer only) a body waits behind an earlier pipelined response: reading paused
_GONE = 4  # refused, upgraded or closed: nothing more is read or timed


@dataclass(frozen=True)
class HttpLimits:
    """The bounds of :class:`BoundedHttpToolsProtocol` (defaults: those of the settings)."""

    max_url_bytes: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 2000


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that has been answered."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within :class:`HttpLimits` (see the module's docstring)."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.limits
        self._max_url = limits.max_url_bytes
        self._max_headers = limits.max_header_bytes
        # httptools keeps an unfinished header line in a buffer of its own, never shown to
        # on_header: a head read in several pieces is refused once it is this large.
        self._max_head = limits.max_url_bytes + limits.max_header_bytes
        self._url_bytes = 0
        self._header_bytes = 0
        self._head_bytes = 0
        self._read_in_head = False
        self._phase = _HEAD
        self._timed = _IDLE
        self._timer: asyncio.TimerHandle | None = None

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer(503, b"Service Unavailable")
            return
        self._retime()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, plus: a refusal of ours is answered already (no 400), and the timer
        # follows what the connection reads once this piece has been parsed.
        self._unset_keepalive_if_required()
        self._read_in_head = self._phase == _HEAD  # reset when a head ends within this piece
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._phase != _GONE:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        if self._read_in_head and self._phase == _HEAD:
            # All of this piece is head: count it, for the header line httptools still holds.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._answer(431, b"Request Header Fields Too Large")
                return
        if self._phase != self._timed:
            self._retime()

    def handle_websocket_upgrade(self) -> None:
        self._stop()
        super().handle_websocket_upgrade()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._timed == _QUEUED and not self.transport.is_closing():
            self._retime()  # the pipelined request now runs, and its body is read again

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._url_bytes = self._header_bytes = self._head_bytes = 0

    # on_url and on_header do what uvicorn's do, inline: they run for every header.

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._max_url:
            self._refuse(414, b"URI Too Long")
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + HEADER_OVERHEAD
        if self._header_bytes > self._max_headers:
            self._refuse(431, b"Request Header Fields Too Large")
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._read_in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        super().on_message_complete()

    # Bounds

    def _retime(self) -> None:
        """Arm the timer of what the connection now reads, in place of the previous one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        phase = self._phase
        if phase == _HEAD:
            self._timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
        elif phase == _BODY:
            if self.pipeline:  # reading is paused until the responses before it are sent
                self._timed = _QUEUED
                return
            self._timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)
        self._timed = phase

    def _stop(self) -> None:
        self._phase = self._timed = _GONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        # ``scope`` is set by a request's first byte; say why unless a response is on its way.
        quiet = self.scope is None or (self.cycle is not None and not self.cycle.response_complete)
        self._close(quiet)

    def _body_timed_out(self) -> None:
        self._timer = None
        self._close(self.cycle is None or self.cycle.response_started)

    def _close(self, quiet: bool) -> None:
        _log.debug("slow request closed", client=self.client, phase=self._phase)
        if quiet:
            self._stop()
            self.transport.close()
        else:
            self._answer(408, b"Request Timeout")

    def _refuse(self, status: int, reason: bytes) -> None:
        _log.debug("request refused", client=self.client, status=status)
        self._answer(status, reason)
        raise _Refused  # stops the parser: feed_data raises HttpParserError, not answered again

    def _answer(self, status: int, reason: bytes) -> None:
        """A short plain-text answer, then the connection closed; nothing more of it is read."""
        self._stop()
        headers = PLAIN_HEADERS_HTTPS if self.scheme == "https" else PLAIN_HEADERS
        content = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, *headers]:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(reason),
            b"connection: close\r\n\r\n",
            reason,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()


_log = structlog.get_logger("reactor.web")


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give uvicorn's ``Config(http=...)``, within ``limits``."""

    class Bounded(BoundedHttpToolsProtocol):
        pass

    Bounded.limits = limits
    return Bounded
