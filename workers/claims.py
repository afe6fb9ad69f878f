"""arq's worker, claiming the jobs of one poll in one round trip instead of four per job.

arq's ``Worker.start_jobs`` claims each job it polled with ``WATCH``, ``EXISTS``, ``ZSCORE``
and ``MULTI``/``PSETEX``/``EXEC``: four round trips per job, the largest share of the worker's
Redis traffic. :class:`ClaimingWorker` takes as many free slots as it can and claims that many
jobs with one script doing the same checks (not running elsewhere, still queued, due), with
the same in-progress key and lock time. Everything else (running, retries, results, shutdown)
is arq's own. A claim checks and sets in one atomic script, so two workers never both start
the same job, as with arq's optimistic transaction.

For a job that is an event of the pipeline, the same script also starts the event's run
(record marked ``running``; see :mod:`workers.pipeline`). A worker stopped between the claim
and the job's first step leaves the record ``running``, as one killed mid-run does: the next
run counts an interrupted attempt, and the job runs again once the claim's lock expires.
"""

from __future__ import annotations

from signal import Signals
from typing import Any

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript

from app.eventlog import MAX_LATER, Started, started
from app.jobstate import BEGIN_FUNCTION

# ARGV: queue, now (ms), lock (ms), event prefix ('' = start no runs), most later types ('0' =
# none read: nothing supersedes), then
# job ids. Returns per id 0 (not claimed), or {score} or, for a job that is an event with a
# record under the prefix, {score, begin_run's reply}: the event's run is started too.
CLAIM = (
    BEGIN_FUNCTION
    + """
local out = {}
local prefix = ARGV[4]
for i = 6, #ARGV do
  local id = ARGV[i]
  local key = '"""
    + in_progress_key_prefix
    + """' .. id
  local score = redis.call('ZSCORE', ARGV[1], id)
  if score and tonumber(score) <= tonumber(ARGV[2]) and redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, ARGV[3], '1')
    if prefix ~= '' and redis.call('EXISTS', prefix .. 'event:' .. id) == 1 then
      out[#out + 1] = {score, begin_run(prefix, id, ARGV[5] == '0' and '0' or '1', ARGV[5])}
    else
      out[#out + 1] = {score}
    end
  else
    out[#out + 1] = 0
  end
end
return out
"""
)
MAX_BEGUN = 10_000


class ClaimingWorker(Worker):
    """An arq ``Worker`` whose ``start_jobs`` claims a batch of jobs per round trip.

    With ``event_prefix``, a claimed job that is an event of the pipeline also has its run
    started in the same script (:data:`app.jobstate.BEGIN_FUNCTION`); the job layer takes the
    result from :attr:`begun` instead of starting the run itself (one round trip fewer).
    """

    _claim_script: AsyncScript | None = None

    #: Set once SIGTERM or SIGINT arrived: whatever happens to this run (Redis lost while
    #: starting or running), the process stops instead of starting a worker again.
    stop_requested = False

    def handle_sig(self, signum: Signals) -> None:
        self.stop_requested = True
        super().handle_sig(signum)

    def handle_sig_wait_for_completion(self, signum: Signals) -> None:
        self.stop_requested = True
        super().handle_sig_wait_for_completion(signum)

    def __init__(self, *args: Any, event_prefix: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.event_prefix = event_prefix
        self.begun: dict[str, Started] = {}

    def take_begun(self, event_id: str) -> Started | None:
        """The run this worker started for ``event_id`` when it claimed the job, once."""
        return self.begun.pop(event_id, None)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        pending = [job_id.decode() for job_id in job_ids]
        while pending:
            await self.sem.acquire()  # wait for a free slot, as arq does
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            taken = 1
            while taken < min(len(pending), self.max_jobs - self.job_counter):
                if self.sem.locked():
                    break
                await self.sem.acquire()  # free: returns at once
                taken += 1
            batch, pending = pending[:taken], pending[taken:]
            self.job_counter += taken
            claims = await self._claim(batch)
            for job_id, claim in zip(batch, claims, strict=True):
                if not claim:  # running elsewhere, finished, or deferred meanwhile
                    self.job_counter -= 1
                    self.sem.release()
                    continue
                if len(claim) > 1:
                    if len(self.begun) >= MAX_BEGUN:  # runs arq never started (cannot grow)
                        self.begun.clear()
                    self.begun[job_id] = started(job_id, claim[1])
                task = self.loop.create_task(self.run_job(job_id, int(float(claim[0]))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    async def _claim(self, job_ids: list[str]) -> list[Any]:
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(CLAIM)
        lock_ms = int(self.in_progress_timeout_s * 1000)
        try:
            found = await self._claim_script(
                args=[
                    self.queue_name,
                    timestamp_ms(),
                    lock_ms,
                    self.event_prefix,
                    # Who waits behind is read only for superseding (none configured: 0).
                    MAX_LATER if self.ctx.get("latest_only") is not None else 0,
                    *job_ids,
                ]
            )
        except BaseException:
            self.job_counter -= len(job_ids)  # hand the slots back, as arq does on its errors
            for _ in job_ids:
                self.sem.release()
            raise
        return list(found)
