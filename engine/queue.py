"""Enqueue jobs on RQ, and ask about them: place in line, status, cancel, a user's jobs.

Queues. One RQ queue per (priority, worker pool), named ``{prefix}-{priority}-{pool}``, e.g.
``proofroom-interactive-sd15`` and ``proofroom-bulk-turbo``. A model's pool is ``pool:`` in
models.yaml, else its family, so without pools the queues are ``{prefix}-{priority}-{family}``
as they always were. A worker listens on, in this order, the interactive queue of each pool it
serves, then the bulk queue of each; RQ pops from the first non-empty queue in the order
given, so interactive work always goes first. ``proofroom worker`` without ``--pools`` or
``--family`` serves every pool the catalog knows; ``--pools sdxl,turbo`` and ``--family sd15``
serve those (together: all of them). Which pools live workers serve, and since when, is
``engine.pools``.

Ids. The public job id is ``JobSpec.id`` (letters, digits, ``_`` and ``-``, checked by
``JobSpec``). The RQ job id is ``{prefix}-{spec.id}`` so that RQ's keys (``rq:job:...``,
``rq:queue:...``) carry the prefix as well; a prefix may only contain letters, digits, ``_``
and ``-`` there (other characters become ``-``).

RQ job: function ``engine.tasks.run_job`` by dotted name (this module never imports it, nor
torch), one argument ``spec.model_dump(mode="json")``, RQ's ``JSONSerializer``,
``Retry(max=settings.job_retries)``. A retry is spent when a worker dies under the job (see
``engine.recovery``) or on an internal error; a user error is never retried.

Other keys: ``{prefix}:cancel:{job_id}`` (cancel flag the worker checks every step) and
``{prefix}:active:{user}`` (ids of a requester's jobs, pruned lazily by :meth:`jobs_for`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal, get_args

import redis as redis_lib
from pydantic import BaseModel
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from engine.catalog import Catalog, Family, check_pool_name
from engine.events import EventStream, JobEvent
from engine.model_folders import load_catalog
from engine.redis_values import as_text
from engine.settings import Settings
from engine.spec import JobSpec, Priority

log = logging.getLogger(__name__)

TASK = "engine.tasks.run_job"
PRIORITIES: tuple[str, ...] = get_args(Priority)
FAMILIES: tuple[str, ...] = get_args(Family)
JobState = Literal["queued", "started", "done", "failed", "cancelled"]
_RQ_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def rq_prefix(settings: Settings) -> str:
    """The key prefix as it may appear in RQ queue names and job ids."""
    return _RQ_UNSAFE.sub("-", settings.key_prefix)


def queue_name(settings: Settings, priority: str, pool: str) -> str:
    """Name of the RQ queue for ``priority`` jobs of the models of worker pool ``pool``."""
    return f"{rq_prefix(settings)}-{priority}-{pool}"


def queue_names(settings: Settings, pools: Sequence[str] | None = None) -> list[str]:
    """Queues a worker serving ``pools`` (the families' when ``None``; ``engine.pools.
    served_pools`` works out a worker's) listens on, interactive first, each pool once.
    :class:`ValueError` for a name that cannot be a pool."""
    chosen = list(dict.fromkeys(pools or FAMILIES))
    for pool in chosen:
        check_pool_name(pool)
    return [queue_name(settings, p, pool) for p in PRIORITIES for pool in chosen]


def parse_queue_name(settings: Settings, name: str) -> tuple[str, str] | None:
    """``(priority, pool)`` of one of this prefix's queues; ``None`` for any other name."""
    rest = name.removeprefix(f"{rq_prefix(settings)}-")
    priority, _, pool = rest.partition("-")
    if rest == name or priority not in PRIORITIES or not pool:
        return None
    return priority, pool


def rq_job_id(settings: Settings, job_id: str) -> str:
    """The RQ job id of public job id ``job_id``."""
    return f"{rq_prefix(settings)}-{job_id}"


def fetch_job(*, redis: redis_lib.Redis, settings: Settings, job_id: str) -> Job | None:
    """The RQ job of public job id ``job_id``; ``None`` once RQ no longer has it."""
    try:
        return Job.fetch(rq_job_id(settings, job_id), connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def job_spec(*, job: Job) -> JobSpec | None:
    """The spec ``job`` was queued with (its one argument, see :meth:`JobQueue.enqueue`);
    ``None`` when it cannot be read."""
    try:
        return JobSpec.model_validate(job.args[0])
    except Exception:  # a job of another version, or corrupt data: not ours to read
        log.warning("job %s has no readable spec", job.id, exc_info=True)
        return None


class JobInfo(BaseModel):
    """A job that is waiting or running, as listed by ``/imagine status``."""

    job_id: str
    state: JobState
    position: int | None  # place in line (1 = next); None once started
    spec: JobSpec


class JobQueue:
    """The enqueue side: used by the bot (and the embedded default). No torch."""

    def __init__(
        self, *, redis: redis_lib.Redis, settings: Settings, catalog: Catalog | None = None
    ) -> None:
        self.redis = redis
        self.settings = settings
        self._catalog = catalog
        self.events = EventStream(redis=redis, settings=settings)
        self._queues: dict[str, Queue] = {}

    @property
    def catalog(self) -> Catalog:
        """The catalog that maps a model to its pool (loaded on first use)."""
        if self._catalog is None:
            self._catalog = load_catalog(self.settings)
        return self._catalog

    def enqueue(self, spec: JobSpec) -> str:
        """Queue ``spec`` by its priority and its model's pool; publish ``queued`` with its place
        in line; return the job id (``spec.id``)."""
        pool = self.catalog.model(spec.model).pool
        queue = self._queue(queue_name(self.settings, spec.priority, pool))
        # The queued event goes out before the push so that no worker can publish `started`
        # ahead of it; the place in line is therefore computed, not read back.
        ahead = sum(self._queue(name).count for name in self._ahead_of(spec.priority, pool))
        self.events.publish(
            JobEvent(
                job_id=spec.id,
                kind="queued",
                position=ahead + queue.count + 1,
                origin=spec.origin,
            )
        )
        if spec.requested_by:
            with self.redis.pipeline() as pipe:
                pipe.sadd(self._active_key(spec.requested_by), spec.id)
                # An index of the user's live jobs, pruned as it is read: a user idle for
                # longer than RQ keeps an ended job (and its longest run) has none left.
                pipe.expire(
                    self._active_key(spec.requested_by),
                    self.settings.result_ttl_s + self.settings.job_timeout_s,
                )
                pipe.execute()
        self._push(queue, spec)
        log.info("queued job %s on %s", spec.id, queue.name)
        return spec.id

    def _push(self, queue: Queue, spec: JobSpec) -> None:
        queue.enqueue_call(
            TASK,
            args=(spec.model_dump(mode="json"),),
            job_id=rq_job_id(self.settings, spec.id),
            timeout=self.settings.job_timeout_s,
            result_ttl=self.settings.result_ttl_s,
            failure_ttl=self.settings.result_ttl_s,
            retry=Retry(max=self.settings.job_retries) if self.settings.job_retries else None,
            description=f"{spec.model} x{spec.count} {spec.steps} steps for {spec.requested_by}",
        )

    def cancel(self, job_id: str) -> bool:
        """Cancel a job. A queued job is taken off its queue and ``cancelled`` is published now;
        a running one stops at its next step (the worker publishes ``cancelled``). ``False``
        when the job is unknown or has already ended."""
        job = self._job(job_id)
        if job is None or self.events.terminal_kind(job_id) is not None:
            return False
        status = job.get_status(refresh=False)  # just fetched
        if status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
            return False
        # Flag first: a worker that pops the job between here and the LREM sees the flag before
        # it renders anything.
        self.redis.set(self.cancel_key(job_id), "1", ex=self.settings.job_timeout_s * 2 + 60)
        if self._queue(job.origin).remove(job.id):
            job.cancel()
            # RQ keeps a cancelled job's hash for good; forget it as a finished one.
            self.redis.expire(job.key, self.settings.result_ttl_s)
            spec = job_spec(job=job)
            self.events.publish_terminal(
                JobEvent(
                    job_id=job_id,
                    kind="cancelled",
                    message="cancelled before it started",
                    origin=spec.origin if spec else {},
                )
            )
            log.info("cancelled queued job %s", job_id)
        else:
            log.info("cancel requested for running job %s", job_id)
        return True

    def exists(self, job_id: str) -> bool:
        """Whether RQ still has the job: False once its record expired, or Redis came back
        from a restart without it (no persistence)."""
        return bool(self.redis.exists(Job.key_for(rq_job_id(self.settings, job_id))))

    def unknown(self, job_ids: Sequence[str]) -> set[str]:
        """Those of ``job_ids`` that neither RQ nor the event stream knows: not waiting, not
        running, not ended. Lost (Redis came back from a restart without them) or long
        expired. One round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                rq_key = Job.key_for(rq_job_id(self.settings, job_id))
                pipe.exists(rq_key, self.events.guard_key(job_id))
            counts = pipe.execute()
        return {job_id for job_id, count in zip(job_ids, counts, strict=True) if not count}

    def is_cancelled(self, job_id: str) -> bool:
        """Whether someone asked to cancel ``job_id`` (checked by the worker every step)."""
        return bool(self.redis.exists(self.cancel_key(job_id)))

    def cancel_key(self, job_id: str) -> str:
        """The cancel flag of ``job_id``."""
        return f"{self.settings.key_prefix}:cancel:{job_id}"

    def position(self, job_id: str) -> int | None:
        """Place in line (1 = next to start) among the jobs of its pool, interactive before
        bulk; ``None`` when the job is not waiting."""
        return self._position(self._job(job_id))

    def _position(self, job: Job | None) -> int | None:
        if job is None or not job.origin:
            return None
        index = self._queue(job.origin).get_job_position(job.id)
        if index is None:
            return None
        parsed = parse_queue_name(self.settings, job.origin)
        if parsed is None:  # not one of ours: its own queue is all we know
            return index + 1
        ahead = sum(self._queue(name).count for name in self._ahead_of(*parsed))
        return ahead + index + 1

    def status(self, job_id: str) -> JobState | None:
        """Where the job is: queued, started, done, failed or cancelled; ``None`` if unknown."""
        return self._status(job_id, self._job(job_id))

    def _status(self, job_id: str, job: Job | None) -> JobState | None:
        ended = self.events.terminal_kind(job_id)
        if ended is not None:
            return ended  # type: ignore[return-value]
        if job is None:
            return None
        # ``job`` was just fetched (by the caller), which read its status too.
        return _STATES.get(job.get_status(refresh=False), "queued")

    def spec(self, job_id: str) -> JobSpec | None:
        """The spec the job was queued with, while RQ keeps the job (``result_ttl_s``)."""
        job = self._job(job_id)
        return job_spec(job=job) if job is not None else None

    def jobs_for(self, user: str) -> list[JobInfo]:
        """Queued and running jobs requested by ``user``, oldest first."""
        key = self._active_key(user)
        infos = []
        for raw in self.redis.smembers(key):
            job_id = as_text(raw)
            job = self._job(job_id)  # fetched once for state, spec and place in line
            state = self._status(job_id, job)
            spec = None
            if job is not None and state in ("queued", "started"):
                spec = job_spec(job=job)
            if spec is None or state is None:
                self.redis.srem(key, job_id)  # ended or expired: prune the index
                continue
            position = self._position(job) if state == "queued" else None
            infos.append(JobInfo(job_id=job_id, state=state, position=position, spec=spec))
        return sorted(infos, key=lambda info: info.spec.created_at)

    # -- internals --------------------------------------------------------------------------

    def _ahead_of(self, priority: str, pool: str) -> list[str]:
        # Interactive jobs of the same pool go before bulk ones.
        return [queue_name(self.settings, "interactive", pool)] if priority == "bulk" else []

    def _queue(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.redis, serializer=JSONSerializer)
        return self._queues[name]

    def _job(self, job_id: str) -> Job | None:
        return fetch_job(redis=self.redis, settings=self.settings, job_id=job_id)

    def _active_key(self, user: str) -> str:
        return f"{self.settings.key_prefix}:active:{user}"


_STATES: dict[JobStatus, JobState] = {
    JobStatus.QUEUED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.CREATED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "done",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "cancelled",
}
