"""Structured logging: JSON lines in production, readable lines on a terminal.

Secrets never reach a log line: :func:`redact` masks the values of keys that name a secret
(:func:`app.masking.is_secret_key`, the rule the dashboard and the CLI apply too) before rendering.

The JSON format is on the ingest hot path (one line per stored event), so its last step is one
fused processor (:class:`JsonLine`): level, UTC timestamp (formatted once per second), redaction
and orjson rendering straight to bytes, written by :class:`LineWriter`: the debug and info
lines of one event-loop iteration go out in one write at its end (a warning or worse is
written at once, with whatever is waiting before it).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.contextvars import merge_contextvars

from app.masking import is_secret_key

LOG_MASK = "***"  # ASCII: log lines are read in terminals and grepped


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor masking values whose key names a secret."""
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = LOG_MASK
    return event_dict


def _fallback(value: Any) -> str:
    return repr(value)


class JsonLine:
    """Final processor of the JSON format: ``level``, ``timestamp``, redaction, orjson bytes.

    Does what ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``, :func:`redact` and a
    ``JSONRenderer`` did as four steps, with the timestamp's date and time part formatted
    once per second (microseconds always written, ``Z`` suffix).
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        # Keys already found not to name a secret: a set lookup instead of the memoised check.
        self._plain: set[str] = set()

    def _timestamp(self) -> str:
        second, micros = divmod(time.time_ns() // 1000, 1_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{micros:06d}Z"

    def __call__(self, _: Any, method: str, event_dict: MutableMapping[str, Any]) -> bytes:
        event_dict["level"] = "warning" if method == "warn" else method
        event_dict["timestamp"] = self._timestamp()
        plain = self._plain
        for key in event_dict:
            if key not in plain:
                if is_secret_key(key):
                    event_dict[key] = LOG_MASK
                elif isinstance(key, str) and len(plain) < 4096:
                    plain.add(key)
        try:
            return orjson.dumps(event_dict, default=_fallback, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # integers beyond 64 bits and the like: the standard codec takes them
            return json.dumps(event_dict, default=_fallback, separators=(",", ":")).encode()


class JsonRecord(logging.Formatter):
    """Standard-library records (arq, uvicorn, redis) as JSON lines like structlog's own:
    ``event`` (the message), ``logger``, ``level``, ``timestamp``, secrets masked by key,
    and ``exception`` when there is one, so a JSON log pipeline gets one format."""

    def __init__(self) -> None:
        super().__init__()
        self._line = JsonLine()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name, "event": record.getMessage()}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        method = record.levelname.lower()
        return self._line(None, method, fields).decode("utf-8", "replace")


# Unwritten log output held at most, while the log's reader does not keep up (a pipe nobody
# reads, a stalled collector); lines beyond it are dropped and counted, never waited for.
MAX_BACKLOG_BYTES = 8 * 1024 * 1024
# Debug and info lines made in a running loop are handed to the writing thread this often, in
# one piece: a hand-over per loop iteration cost the ingest path ~7 % of its CPU in thread
# wake-ups; a line's delay is far below what anyone reading logs notices.
FLUSH_DELAY_SECONDS = 0.05
# How long the process waits at exit for held lines to be written.
EXIT_DRAIN_SECONDS = 2.0


class LineWriter:
    """structlog logger writing rendered lines (bytes) to a binary stream, in order.

    Debug and info lines made inside a running event loop wait up to
    :data:`FLUSH_DELAY_SECONDS` and go out together (one system call for every line of many
    requests); warnings and worse go out at once, after whatever waits before them. Inside a
    running loop the writing itself is done by a thread of the writer's own: a log reader
    that stops reading (a full pipe) must never stall the loop, and with it every request.
    Up to :data:`MAX_BACKLOG_BYTES` wait for it; what comes beyond is dropped, and a warning
    line says how many lines were lost once writing resumes. Outside a loop (commands, start-up)
    lines are written at once by the caller. Lines still held when the process exits are
    written then, waiting at most :data:`EXIT_DRAIN_SECONDS`.
    """

    def __init__(self, stream: Any = None, max_backlog: int = MAX_BACKLOG_BYTES) -> None:
        # None: the binary buffer of ``sys.stderr`` as it is at each write (a test harness or a
        # supervisor may swap the stream after configuration; lines follow it).
        self._stream = stream
        self._max_backlog = max_backlog
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        # Chunks handed to the writing thread, each with the stream it goes to.
        self._ready = threading.Condition(threading.Lock())
        self._backlog: deque[tuple[Any, bytes]] = deque()
        self._backlog_bytes = 0
        self._writing = False
        self._dropped = 0
        self._thread: threading.Thread | None = None
        atexit.register(self.close)

    def _later(self, message: bytes) -> None:
        with self._lock:
            lines = self._lines
            lines.append(message)
            if len(lines) != 1:
                return  # a flush is already due
        try:
            asyncio.get_running_loop().call_later(FLUSH_DELAY_SECONDS, self.flush)
        except RuntimeError:  # no loop in this thread: write now
            self.flush()

    def _now(self, message: bytes) -> None:
        with self._lock:
            self._lines.append(message)
        self.flush()

    def flush(self) -> None:
        """Send what waits: to the writing thread inside a running loop, else written here."""
        with self._lock:
            lines, self._lines = self._lines, []
            if not lines:
                return
            lines.append(b"")
            data = b"\n".join(lines)
            stream = self._stream
            if stream is None:
                stream = getattr(sys.stderr, "buffer", None)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._write_here(stream, data)
                return
            self._hand_over(stream, data, len(lines) - 1)

    def _write_here(self, stream: Any, data: bytes) -> None:
        """Outside a loop: after what the thread still holds (order kept), then this."""
        self.drain(EXIT_DRAIN_SECONDS)
        _write(stream, data)

    def _hand_over(self, stream: Any, data: bytes, count: int) -> None:
        with self._ready:
            if self._backlog_bytes + len(data) > self._max_backlog:
                self._dropped += count
                return
            self._backlog.append((stream, data))
            self._backlog_bytes += len(data)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reactor-log-writer", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._backlog:
                    self._ready.wait()
                stream, data = self._backlog.popleft()
                self._writing = True
            notice = b""
            try:
                _write(stream, data)
                with self._ready:
                    if self._dropped and not self._backlog:  # caught up: say what was lost
                        notice, self._dropped = _dropped_line(self._dropped), 0
                if notice:
                    _write(stream, notice)
            except Exception:  # noqa: S110 - a log that cannot be written is no crash
                pass
            with self._ready:
                self._backlog_bytes -= len(data)
                self._writing = False
                self._ready.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until the writing thread has written everything held; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while self._backlog or self._writing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
        return True

    def close(self) -> None:
        """At exit: what waits is written (the writing thread's part within a bound)."""
        with contextlib.suppress(Exception):  # nothing left to tell at exit
            self.flush()  # no loop runs at exit: written here, after what the thread holds
        self.drain(EXIT_DRAIN_SECONDS)

    debug = info = msg = log = _later
    warning = warn = error = err = critical = fatal = exception = failure = _now


def _write(stream: Any, data: bytes) -> None:
    if stream is None:  # a text-only stream took stderr's place
        sys.stderr.write(data.decode("utf-8", "replace"))
        sys.stderr.flush()
        return
    stream.write(data)
    stream.flush()


def _dropped_line(count: int) -> bytes:
    fields = {
        "event": "log lines dropped: the log output was not read fast enough",
        "count": count,
        "logger": "reactor.logs",
    }
    return JsonLine()(None, "warning", fields) + b"\n"


class WriterHandler(logging.Handler):
    """Standard-library records (arq, uvicorn, redis) through the same :class:`LineWriter`:
    one order for every line, and none of them blocks the event loop on a stalled reader."""

    def __init__(self, writer: LineWriter, formatter: logging.Formatter) -> None:
        super().__init__()
        self.writer = writer
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode("utf-8", "replace")
        except Exception:  # as logging.Handler does
            self.handleError(record)
            return
        self.writer.warning(line)


class _CurrentStderr:
    """``sys.stderr`` as it is when a line is written, not as it was at configuration.

    Loggers are cached on first use; one made while a test captured stderr would otherwise
    keep writing to that capture after it closed.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# What configure_logging set up for JSON lines at info level: factory, wrapper class,
# processors (the list itself), renderer and writer.
_json_info: tuple[Any, Any, list[Any], JsonLine, LineWriter] | None = None


def info_line(logger: Any, event: str, **fields: Any) -> None:
    """``logger.info(event, **fields)`` for a logger that has no bound context.

    While the JSON format configured here is in force, the line is rendered as its processors
    would render it (context variables merged, level, time, secrets masked) and handed to the
    same writer, without structlog's per-call wrapping or the processors that have nothing to
    do (the ingest hot path: one line per event). Under any other configuration (console, a
    test capturing logs) it is ``logger.info``.
    """
    ours = _json_info
    if ours is not None:
        config = structlog.get_config()
        processors = config["processors"]
        if (
            processors is ours[2]
            and config["logger_factory"] is ours[0]
            and config["wrapper_class"] is ours[1]
            # structlog.testing.capture_logs swaps the list's contents in place
            and len(processors) == 3
            and processors[2] is ours[3]
            and processors[0] is merge_contextvars
            and processors[1] is structlog.processors.format_exc_info
        ):
            writer = ours[4]
            fields["event"] = event  # last, as structlog orders it
            merge_contextvars(writer, "info", fields)
            if "exc_info" in fields:
                structlog.processors.format_exc_info(writer, "info", fields)
            writer.info(ours[3](writer, "info", fields))
            return
    logger.info(event, **fields)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and the standard library once per process."""
    global _json_info
    numeric = logging.getLevelName(level.upper())
    _json_info = None
    wrapper = structlog.make_filtering_bound_logger(numeric)
    processors: list[Any] = [merge_contextvars]
    stream = getattr(sys.stderr, "buffer", None)
    factory: Any
    if fmt == "json" and stream is not None:
        renderer = JsonLine()
        processors += [structlog.processors.format_exc_info, renderer]
        writer = LineWriter()
        factory = lambda *args: writer  # noqa: E731 - one writer: every logger's lines in order
        if numeric <= logging.INFO:
            _json_info = (factory, wrapper, processors, renderer, writer)
    else:
        processors += [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer()
            if fmt == "json"
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
        factory = structlog.PrintLoggerFactory(cast(TextIO, _CurrentStderr()))
    structlog.configure(
        processors=processors,
        wrapper_class=wrapper,
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    if fmt == "json":
        handler: logging.Handler
        if stream is not None:
            handler = WriterHandler(writer, JsonRecord())
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonRecord())
        logging.basicConfig(level=numeric, handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
        )
    # httpx logs every request URL at INFO; URLs may carry a jwt query parameter.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
