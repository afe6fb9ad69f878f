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
import json
import logging
import sys
import threading
import time
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


class LineWriter:
    """structlog logger writing rendered lines (bytes) to a binary stream, in order.

    Debug and info lines made inside a running event loop wait for the end of the loop's
    current iteration and are written together (one system call for every line of a batch of
    requests); outside a loop, and for warnings and worse, lines are written at once. Lines
    still waiting when the process exits are written then.
    """

    def __init__(self, stream: Any = None) -> None:
        # None: the binary buffer of ``sys.stderr`` as it is at each write (a test harness or a
        # supervisor may swap the stream after configuration; lines follow it).
        self._stream = stream
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        atexit.register(self.flush)

    def _later(self, message: bytes) -> None:
        with self._lock:
            lines = self._lines
            lines.append(message)
            if len(lines) != 1:
                return  # a flush is already due
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop in this thread: write now
            self.flush()

    def _now(self, message: bytes) -> None:
        with self._lock:
            self._lines.append(message)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            if lines:
                lines.append(b"")
                data = b"\n".join(lines)
                stream = self._stream
                if stream is None:
                    stream = getattr(sys.stderr, "buffer", None)
                    if stream is None:  # a text-only stream took stderr's place
                        sys.stderr.write(data.decode("utf-8", "replace"))
                        sys.stderr.flush()
                        return
                stream.write(data)
                stream.flush()

    debug = info = msg = log = _later
    warning = warn = error = err = critical = fatal = exception = failure = _now


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
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonRecord())
        logging.basicConfig(level=numeric, handlers=[handler])
    else:
        logging.basicConfig(
            level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
        )
    # httpx logs every request URL at INFO; URLs may carry a jwt query parameter.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
