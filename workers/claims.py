"""arq's worker, claiming the jobs of one poll in one round trip instead of four per job.

arq's ``Worker.start_jobs`` claims each job it polled with ``WATCH``, ``EXISTS``, ``ZSCORE``
and ``MULTI``/``PSETEX``/``EXEC``: four round trips per job, the largest share of the worker's
Redis traffic. :class:`ClaimingWorker` takes as many free slots as it can and claims that many
jobs with one script doing the same checks (not running elsewhere, still queued, due), with
the same in-progress key and lock time. Everything else (running, retries, results, shutdown)
is arq's own. A claim checks and sets in one atomic script, so two workers never both start
the same job, as with arq's optimistic transaction.
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript

# ARGV: queue, now (ms), lock (ms), then job ids. Returns one score (started) or 0 per id.
CLAIM = (
    """
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local key = '"""
    + in_progress_key_prefix
    + """' .. id
  local score = redis.call('ZSCORE', ARGV[1], id)
  if score and tonumber(score) <= tonumber(ARGV[2]) and redis.call('EXISTS', key) == 0 then
    redis.call('PSETEX', key, ARGV[3], '1')
    out[#out + 1] = score
  else
    out[#out + 1] = 0
  end
end
return out
"""
)


class ClaimingWorker(Worker):
    """An arq ``Worker`` whose ``start_jobs`` claims a batch of jobs per round trip."""

    _claim_script: AsyncScript | None = None

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
            scores = await self._claim(batch)
            for job_id, score in zip(batch, scores, strict=True):
                if not score:  # running elsewhere, finished, or deferred meanwhile
                    self.job_counter -= 1
                    self.sem.release()
                    continue
                task = self.loop.create_task(self.run_job(job_id, int(float(score))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    async def _claim(self, job_ids: list[str]) -> list[bytes | int]:
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(CLAIM)
        lock_ms = int(self.in_progress_timeout_s * 1000)
        try:
            found = await self._claim_script(
                args=[self.queue_name, timestamp_ms(), lock_ms, *job_ids]
            )
        except BaseException:
            self.job_counter -= len(job_ids)  # hand the slots back, as arq does on its errors
            for _ in job_ids:
                self.sem.release()
            raise
        return list(found)
