"""The JSON log line (app.logs.JsonLine): the one line written per stored event."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from app.logs import FLUSH_DELAY_SECONDS, JsonLine, LineWriter, configure_logging, info_line

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def render(method: str, **event: Any) -> dict[str, Any]:
    line = JsonLine()(None, method, dict(event))
    assert isinstance(line, bytes) and b"\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_level_timestamp_and_fields() -> None:
    line = render("info", event="event stored", event_id="ev_1", content_id="42")
    assert line["event"] == "event stored" and line["event_id"] == "ev_1"
    assert line["level"] == "info"
    assert ISO_UTC.match(line["timestamp"]), line["timestamp"]
    assert render("warn", event="x")["level"] == "warning"


def test_secrets_are_masked_whatever_the_case() -> None:
    line = render("info", event="x", token="t0k3n", Authorization="JWT abc", shared_secret="s")
    assert line["token"] == line["Authorization"] == line["shared_secret"] == "***"
    assert "t0k3n" not in json.dumps(line)


def test_log_lines_mask_what_the_dashboard_masks() -> None:
    secrets = {"bearer": "b", "Passphrase": "p", "forge_system_token": "f", "basicAuth": "a"}
    plain = {"author_id": "u1", "bypass": "no", "space_key": "DEV", "client_key": "ck"}
    line = render("info", event="x", **secrets, **plain)
    assert all(line[key] == "***" for key in secrets)
    assert all(line[key] == value for key, value in plain.items())


def test_values_orjson_cannot_take_still_render() -> None:
    line = render("info", event="x", big=2**70, thing=object(), ids={1: "a"})
    assert line["big"] == 2**70
    assert line["thing"].startswith("<object object")
    assert line["ids"] == {"1": "a"}


def test_timestamps_within_one_second_share_the_cached_prefix() -> None:
    renderer = JsonLine()
    stamps = [json.loads(renderer(None, "info", {"event": "x"}))["timestamp"] for _ in range(50)]
    assert all(ISO_UTC.match(s) for s in stamps)
    assert stamps == sorted(stamps)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in noisy.items():
            logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restore_logging")
def test_configured_json_logging_writes_one_line_per_call() -> None:
    raw = io.BytesIO()
    wrapper = io.TextIOWrapper(raw, encoding="utf-8")
    saved, sys.stderr = sys.stderr, wrapper
    try:
        configure_logging("info", "json")
        log = structlog.get_logger("reactor.ingest")
        log.info("event stored", event_id="ev_2", token="secret-token")
        log.debug("not written at info")
    finally:
        sys.stderr = saved
    lines = raw.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert (line["event"], line["event_id"], line["token"]) == ("event stored", "ev_2", "***")


@pytest.mark.usefixtures("restore_logging")
def test_standard_library_records_are_json_lines_too() -> None:
    """arq, uvicorn and redis log through the standard library: with the JSON format their
    lines are JSON as well (a log pipeline gets one format), exceptions included."""
    logging.getLogger().handlers.clear()  # as in a process nobody configured before
    stream = io.StringIO()
    saved, sys.stderr = sys.stderr, stream
    try:
        configure_logging("info", "json")
        # names of their own: other tests' servers leave uvicorn's loggers configured
        logging.getLogger("probe.arq.worker").warning("redis connection error %s", "reset")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("probe.uvicorn").exception("Exception in ASGI application")
    finally:
        sys.stderr = saved
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["logger"] == "probe.arq.worker" and first["level"] == "warning"
    assert first["event"] == "redis connection error reset"
    assert ISO_UTC.match(first["timestamp"])
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


class CountingStream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


def test_lines_outside_a_loop_are_written_at_once() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)
    writer.info(b'{"event":"a"}')
    assert stream.getvalue() == b'{"event":"a"}\n'
    writer.warning(b'{"event":"b"}')
    assert stream.getvalue().splitlines() == [b'{"event":"a"}', b'{"event":"b"}']


async def test_info_lines_made_close_together_share_one_write() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)
    for n in range(5):
        writer.info(b"%d" % n)
        await asyncio.sleep(0)  # lines of several loop iterations
    assert stream.writes == 0
    await asyncio.sleep(FLUSH_DELAY_SECONDS * 2)
    assert writer.drain(5)
    assert (stream.writes, stream.getvalue()) == (1, b"0\n1\n2\n3\n4\n")
    writer.info(b"5")
    writer.error(b"6")  # a warning or worse goes out at once, after what waits before it
    assert writer.drain(5)
    assert stream.getvalue().endswith(b"4\n5\n6\n")
    await asyncio.sleep(FLUSH_DELAY_SECONDS * 2)
    assert writer.drain(5) and stream.getvalue().endswith(b"4\n5\n6\n")


class BlockedStream(io.BytesIO):
    """A log reader that stopped reading (a full pipe): each write waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, data: Any) -> int:
        assert self.release.wait(10)
        return super().write(data)


async def test_a_log_reader_that_stops_reading_never_stalls_the_loop() -> None:
    """Before, the loop itself wrote: a full stderr pipe stopped every request of the server."""
    stream = BlockedStream()
    writer = LineWriter(stream, max_backlog=64)
    started = time.monotonic()
    for n in range(50):  # far more than the backlog holds
        writer.info(b"line %02d" % n)
        writer.warning(b"warn %02d" % n)
        await asyncio.sleep(0)
    assert time.monotonic() - started < 1.0  # not a write waited for
    assert not writer.drain(0.05)  # still held while the reader is stuck
    stream.release.set()
    assert writer.drain(5)
    lines = stream.getvalue().splitlines()
    kept = [line for line in lines if line.startswith((b"line", b"warn"))]
    assert kept == sorted(kept, key=lambda line: (int(line[5:7]), line[:4] == b"warn"))
    assert 0 < len(kept) < 100  # what did not fit was dropped, never waited for
    [notice] = [json.loads(line) for line in lines if line.startswith(b"{")]
    assert notice["level"] == "warning" and notice["count"] == 100 - len(kept)
    assert "dropped" in notice["event"]


@pytest.mark.parametrize("level", ["info", "warning"])
@pytest.mark.usefixtures("restore_logging")
def test_info_line_writes_what_the_logger_would(level: str) -> None:
    raw = io.BytesIO()
    wrapper = io.TextIOWrapper(raw, encoding="utf-8")
    saved, sys.stderr = sys.stderr, wrapper
    try:
        configure_logging(level, "json")
        log = structlog.get_logger("reactor.ingest")
        structlog.contextvars.bind_contextvars(request="r-1")
        try:
            log.info("event stored", event_id="ev_3", token="secret-token", n=1)
            info_line(log, "event stored", event_id="ev_3", token="secret-token", n=1)
        finally:
            structlog.contextvars.clear_contextvars()
        with structlog.testing.capture_logs() as captured:
            info_line(structlog.get_logger("fresh"), "duplicate event", event_id="ev_3")
    finally:
        sys.stderr = saved
    lines = [json.loads(line) for line in raw.getvalue().splitlines()]
    if level == "warning":
        assert lines == []
    else:
        assert len(lines) == 2
        for line in lines:
            del line["timestamp"]
        assert lines[0] == lines[1] and list(lines[0]) == list(lines[1])
        assert lines[1]["request"] == "r-1" and lines[1]["token"] == "***"
    expected = {"event": "duplicate event", "event_id": "ev_3", "log_level": "info"}
    assert captured == ([expected] if level == "info" else [])
