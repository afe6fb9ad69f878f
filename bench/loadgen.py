"""Load generators for ``bench/ingest.py``: wrk for throughput, an open-loop driver for latency.

Every request is a validly signed Connect ``page_updated`` webhook of a distinct page (a
numeric content id, as Confluence's: :func:`content_id`), so no two requests are duplicates:
the token covers method and path (the qsh), the body varies. Tokens are signed as Confluence
signs webhooks: ``iat`` is the second of sending and ``exp`` 180 s later, so every webhook of
one second carries that second's token (:class:`Tokens`, signed ahead for the whole run). The
app verifies the first webhook of each second in full and finds the rest in its verified-token
cache, as it would under a real burst.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PATH = "/connect/webhooks/page_updated"

# One Connect page_updated body (shape of tests/fixtures/events/connect/page_updated.json).
BODY = (
    '{"page":{"idAsString":"%s","creatorAccountId":"712020:bench","spaceKey":"ENG",'
    '"spaceId":20000001,"modificationDate":1788716539150,"lastModifierAccountId":"712020:bench",'
    '"self":"https://bench.atlassian.net/wiki/spaces/ENG/pages/%s/x","id":"%s",'
    '"title":"Bench page","creationDate":1788716535483,"contentType":"page","version":1},'
    '"userAccountId":"712020:bench","timestamp":1788716539192,"accountType":"customer",'
    '"updateTrigger":"edit_page","suppressNotifications":false}'
)

WRK_SCRIPT = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  label, counter, first, tokens, headers = args[1], 0, nil, {}, {}
  for line in io.lines(args[2]) do
    local second, token = line:match("^(%%d+) (.+)$")
    first = first or tonumber(second)
    tokens[#tokens + 1] = token
  end
end
function request()
  counter = counter + 1
  local i = math.max(1, math.min(#tokens, os.time() - first + 1))
  if headers[i] == nil then
    headers[i] = {["Content-Type"] = "application/json", ["Authorization"] = "JWT " .. tokens[i]}
  end
  local id = string.format("%%s%%02d%%08d", label, tid, counter)
  return wrk.format("POST", "%(path)s", headers[i], string.format('%(body)s', id, id, id))
end
"""


def label_digits(label: str) -> str:
    """A run's label (``r0``, ``lat``) as the 10 digits that open its content ids."""
    return f"{zlib.crc32(label.encode()):010d}"


def content_id(label: str, stream: int, n: int) -> str:
    """The numeric id of the ``n``-th page one sender (``stream``) of a run sends: 20 digits."""
    return f"{label_digits(label)}{stream:02d}{n:08d}"


Signer = Callable[[int], str]
"""Signs the webhook token of one second (its ``iat``)."""


class Tokens:
    """Webhook tokens of consecutive seconds, signed ahead: :meth:`now` is this second's."""

    def __init__(self, sign: Signer, seconds: float, *, start: int | None = None) -> None:
        self.first = int(time.time()) - 1 if start is None else start
        self.tokens = [sign(self.first + i) for i in range(int(seconds) + 3)]

    def now(self) -> str:
        index = int(time.time()) - self.first
        return self.tokens[max(0, min(len(self.tokens) - 1, index))]

    def write(self, path: Path) -> Path:
        """One ``<second> <token>`` line per second, as the wrk script reads them."""
        lines = (f"{self.first + i} {token}" for i, token in enumerate(self.tokens))
        path.write_text("\n".join(lines) + "\n")
        return path


@dataclass
class Throughput:
    rps: float
    requests: int
    non_2xx: int
    errors: int


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str, tokens: Tokens, label: str, seconds: float, connections: int, workdir: Path
) -> Throughput:
    script = workdir / "webhook.lua"
    script.write_text(WRK_SCRIPT % {"path": PATH, "body": BODY})
    signed = tokens.write(workdir / "tokens.txt")
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
            "--",
            label_digits(label),
            str(signed),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(g) for g in errs.groups()) if errs else 0
    return Throughput(rps, requests, int(non.group(1)) if non else 0, errors)


def request_bytes(host: str, token: str, content_id: str) -> bytes:
    body = (BODY % (content_id, content_id, content_id)).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: JWT {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if match and int(match.group(1)):
        await reader.readexactly(int(match.group(1)))
    return status


async def closed_loop(
    host: str, port: int, tokens: Tokens, label: str, seconds: float, connections: int
) -> Throughput:
    """Fallback throughput driver when wrk is missing (it costs the server CPU; prefer wrk)."""
    stop = time.monotonic() + seconds
    counts = {"ok": 0, "other": 0}

    async def connection(n: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = 0
        while time.monotonic() < stop:
            i += 1
            request = request_bytes(host, tokens.now(), content_id(label, n, i))
            status = await _exchange(reader, writer, request)
            counts["ok" if 200 <= status < 300 else "other"] += 1
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection(n) for n in range(connections)))
    total = counts["ok"] + counts["other"]
    return Throughput(total / (time.monotonic() - started), total, counts["other"], 0)


async def open_loop(
    host: str, port: int, tokens: Tokens, label: str, rate: float, seconds: float
) -> tuple[list[float], int, int]:
    """Requests sent on a fixed schedule; latency counts from the scheduled send time."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies: list[float] = []
    counts = {"ok": 0, "other": 0}
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        request = request_bytes(host, tokens.now(), content_id(label, 0, i))
        if pool.empty():
            conn = await asyncio.open_connection(host, port)
        else:
            conn = pool.get_nowait()
        status = await _exchange(conn[0], conn[1], request)
        latencies.append((time.perf_counter() - due) * 1000)
        counts["ok" if 200 <= status < 300 else "other"] += 1
        pool.put_nowait(conn)

    tasks = []
    for i in range(total):
        tasks.append(asyncio.create_task(one(i)))
        if i % 100 == 99:
            await asyncio.sleep(max(0.0, start + (i - 50) / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies, counts["ok"], counts["other"]
