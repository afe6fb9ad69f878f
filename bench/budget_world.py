"""The world of ``bench/budget.py``: a shared accelerated clock, per-tenant job queues and a
stand-in Confluence points server, all in one Redis so several worker processes share them.

STAND-IN SERVER (``--world standin`` only; by default the bench drives ``simulator/``
through the Confluence client, see ``bench/budget_sim.py``): :data:`SERVER_LUA`, one points
counter per simulated UTC hour that answers 429 (``Retry-After`` to the reset,
``RateLimit-Reason: confluence-quota-global-based``) once the hour's quota is spent, charges
the actual cost of each call, and reports the remaining points and ``NearLimit`` (< 20 % left)
like Confluence's headers.

Cost model of a job (labelled as ours, after the Confluence points table): 40 % page reads
(estimate 2, actual 2), 30 % list reads with ``limit=25`` (estimate 26, actual 1 + 1..24
objects), 30 % writes (1). Against the simulator these are ``get_page``, ``iter_space_pages``
on a space of that many pages, and ``create_footer_comment``. Priorities: 10 % interactive,
80 % reactions, 10 % reconciliation.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

HOUR_MS = 3_600_000

# Jobs wait in one list per (tenant, priority), a "lane"; a deferred job holds back only its
# lane (the budget decides per tenant and priority, so the lane's next job would be deferred
# too). The ready set scores each lane with when it may run next; the lowest due lane runs and
# then goes behind the others (score = now). ARGV: prefix, now ms ('' = the stepped clock's
# ``bench:now``). Returns {lane, job, now} or {'', earliest due ms or -1, now}; a picked job
# counts as busy until REQUEUE_LUA or RECORD_LUA.
PICK_LUA = """
local prefix = ARGV[1]
local now = tonumber(ARGV[2]) or tonumber(redis.call('GET', prefix .. 'bench:now') or '0')
local ready = prefix .. 'bench:ready'
while true do
  local due = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if #due == 0 then return {'', '-1', tostring(now)} end
  if tonumber(due[2]) > now then return {'', due[2], tostring(now)} end
  local job = redis.call('LPOP', prefix .. 'bench:q:' .. due[1])
  if job then
    redis.call('ZADD', ready, now, due[1])
    redis.call('INCR', prefix .. 'bench:busy')
    return {due[1], job, tostring(now)}
  end
  redis.call('ZREM', ready, due[1])
end
"""

# An admitted job's record. ARGV: prefix, record.
RECORD_LUA = """
redis.call('RPUSH', ARGV[1] .. 'bench:admits', ARGV[2])
redis.call('DECR', ARGV[1] .. 'bench:busy')
return 1
"""

# Defer a lane's head job: put it back first in line, not before ``retry`` ms.
# ARGV: prefix, lane, job, retry ms, reason.
REQUEUE_LUA = """
local prefix, lane = ARGV[1], ARGV[2]
redis.call('LPUSH', prefix .. 'bench:q:' .. lane, ARGV[3])
redis.call('ZADD', prefix .. 'bench:ready', 'GT', tonumber(ARGV[4]), lane)
redis.call('HINCRBY', prefix .. 'bench:deferrals', ARGV[5] .. ':' .. lane, 1)
redis.call('DECR', prefix .. 'bench:busy')
return 1
"""

# The stand-in Confluence points server. ARGV: prefix, now ms, cost, quota.
# Returns {status, remaining, retry_after_s}.
SERVER_LUA = """
local prefix, now, cost, quota = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local hour = math.floor(now / 3600000) * 3600000
local key = prefix .. 'bench:server:' .. string.format('%d', hour)
local spent = tonumber(redis.call('GET', key) or '0')
if spent >= quota then
  redis.call('INCR', prefix .. 'bench:server:n429')
  return {429, 0, math.ceil((hour + 3600000 - now) / 1000)}
end
redis.call('INCRBY', key, cost)
redis.call('PEXPIRE', key, 4 * 3600000)
return {200, quota - spent - cost, 0}
"""


class SteppedClock:
    """Simulated time that moves only when the driver says (``bench:now``, epoch ms).

    The driver advances it once every due job has been tried, so the results do not depend
    on how busy the machine is.
    """

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SimClock:
    """Simulated epoch seconds: ``sim_start + (time.time() - real_start) * scale``.

    Every process builds the same clock from the two numbers the driver publishes.
    """

    sim_start: float
    real_start: float
    scale: float

    def __call__(self) -> float:
        return self.sim_start + (time.time() - self.real_start) * self.scale


@dataclass(frozen=True)
class Job:
    tenant: str
    arrival_ms: int
    estimate: int
    actual: int
    priority: int

    @property
    def lane(self) -> str:
        return f"{self.tenant}/{self.priority}"

    def encode(self) -> str:
        return f"{self.arrival_ms}|{self.estimate}|{self.actual}|{self.priority}"

    @classmethod
    def decode(cls, tenant: str, raw: str) -> Job:
        at, est, act, prio = raw.split("|")
        return cls(tenant, int(at), int(est), int(act), int(prio))


def draw_job(rng: random.Random, tenant: str, arrival_ms: int) -> Job:
    kind = rng.random()
    if kind < 0.4:
        estimate, actual = 2, 2
    elif kind < 0.7:
        estimate, actual = 26, 1 + rng.randint(1, 24)
    else:
        estimate, actual = 1, 1
    p = rng.random()
    priority = 0 if p < 0.1 else (2 if p > 0.9 else 1)
    return Job(tenant, arrival_ms, estimate, actual, priority)


MEAN_ACTUAL_POINTS = 0.4 * 2 + 0.3 * 13.5 + 0.3 * 1
