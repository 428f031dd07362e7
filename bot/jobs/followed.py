"""The jobs a bot follows, remembered in its memory as well as in Redis, so that a job Redis
lost is noticed and its thread told, instead of saying "Rendering step 12/20" forever.

Redis is the record (``bot.state``); this is a copy of the part needed to speak about a job
once Redis has forgotten it: its record and its progress message. A Redis restarted without
persistence comes back empty; RQ then has neither the job nor its queue, and no worker will
ever publish its end.

:meth:`FollowedJobs.watch` runs in the event loop (``bot.jobs.pump``) after each read:

- at most every ``refresh_s`` it reads the platform's open jobs (one SMEMBERS, then the hashes
  of jobs new to it, or that it still lacks a progress message for, or that left the set); a
  job whose hash is gone while it was open was lost: Redis forgot the bot's own record;
- after a Redis outage, and every ``check_s``, it asks RQ about every followed job (one round
  trip): one that RQ neither has nor saw end was lost too.

A lost job gets its record back and a ``failed`` terminal event with :data:`LOST_MESSAGE`,
which the event loop then shows like any other failure: the progress message is edited, the
sentence is posted in the thread. The terminal guard makes that happen once, also with
several bots on one Redis, and keeps a late result of a worker from being posted after it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from bot.records import JobRecord
from bot.state import BotState
from engine.events import JobEvent
from engine.queue import JobQueue

log = logging.getLogger(__name__)

LOST_MESSAGE = (
    "it was lost when the job queue restarted, so it will not finish; "
    "please run the command again (job {job_id})"
)
# Hash fields kept in memory: enough to restore a lost job and edit its progress message.
_KEPT = ("record", "progress", "progress:text")


@dataclass
class _Job:
    fields: dict[str, str]
    # Batch jobs have no progress message of their own (the batch has one): nothing to wait for.
    wants_progress: bool
    seen_at: float = field(default_factory=time.monotonic)


class FollowedJobs:
    """The open jobs of one platform, as last read from Redis; see the module docstring."""

    def __init__(
        self,
        *,
        state: BotState,
        queue: JobQueue,
        platform: str,
        refresh_s: float = 1.0,
        check_s: float = 60.0,
    ) -> None:
        self.state = state
        self.queue = queue
        self.platform = platform
        self.refresh_s = refresh_s
        self.check_s = check_s
        self._jobs: dict[str, _Job] = {}
        self._refreshed_at = float("-inf")
        self._checked_at = time.monotonic()

    def follows(self, job_id: str) -> bool:
        """Whether ``job_id`` is remembered, with its progress message once it has one."""
        job = self._jobs.get(job_id)
        return job is not None and (not job.wants_progress or "progress" in job.fields)

    def watch(self, *, after_outage: bool = False) -> list[str]:
        """Refresh what is remembered when due, check RQ after an outage or when due, and
        end the lost jobs; return their ids."""
        now = time.monotonic()
        lost: list[str] = []
        if after_outage or now - self._refreshed_at >= self.refresh_s:
            self._refreshed_at = now
            lost += self._refresh()
        if after_outage or now - self._checked_at >= self.check_s:
            self._checked_at = now
            lost += self._check(settled_before=now - self.refresh_s)
        ended = sorted(set(lost))  # a forgotten job can be found both ways
        for job_id in ended:
            self._end(job_id, self._jobs[job_id].fields)
            del self._jobs[job_id]  # only once told: Redis may go away again meanwhile
        return ended

    def _refresh(self) -> list[str]:
        """Read the open set and the hashes that changed; the ids whose hash Redis forgot."""
        open_ids = self.state.open_jobs(self.platform)
        stale = [
            job_id
            for job_id, job in self._jobs.items()
            if job_id not in open_ids or (job.wants_progress and "progress" not in job.fields)
        ]
        to_read = sorted({*stale, *(open_ids - self._jobs.keys())})
        lost = []
        for job_id, fields in zip(to_read, self.state.jobs_fields(to_read), strict=True):
            if "record" not in fields:
                if job_id in self._jobs:
                    lost.append(job_id)  # open when last read, and now Redis has no record
                continue
            if job_id not in open_ids or "posted:end" in fields:
                self._jobs.pop(job_id, None)  # it ended and its end was shown
                continue
            kept = {k: fields[k] for k in _KEPT if k in fields}
            if job_id in self._jobs:
                self._jobs[job_id].fields = kept
            else:
                spec = JobRecord.model_validate_json(fields["record"]).spec
                self._jobs[job_id] = _Job(fields=kept, wants_progress=not spec.origin.get("batch"))
        return lost

    def _check(self, *, settled_before: float) -> list[str]:
        """Followed jobs that RQ neither has nor saw end. Only jobs remembered since before
        ``settled_before``: a job is recorded an instant before it is queued."""
        ids = [i for i, job in self._jobs.items() if job.seen_at < settled_before]
        return sorted(self.queue.unknown(ids)) if ids else []

    def _end(self, job_id: str, fields: dict[str, str]) -> None:
        """Give a lost job back its record and publish its end, to be shown as a failure."""
        record = JobRecord.model_validate_json(fields["record"])
        log.warning("job %s was lost while Redis was away; telling its thread", job_id)
        self.state.add_job(record)
        progress = {k: v for k, v in fields.items() if k != "record"}
        if progress:
            self.state.set_fields(job_id, progress)
        self.queue.events.publish_terminal(
            JobEvent(
                job_id=job_id,
                kind="failed",
                message=LOST_MESSAGE.format(job_id=job_id),
                error_kind="lost",
                origin=record.spec.origin,
            )
        )
