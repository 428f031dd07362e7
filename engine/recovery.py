"""Notice within seconds that a worker died under a job (kill -9, OOM, lost host), and retry it.

RQ alone notices late: a ``SimpleWorker`` sends no heartbeat while a job runs, so RQ registers
the execution for the whole job timeout plus 60 s and only its registry cleanup, which runs
every few minutes, sees it expire (16 min with the default 900 s timeout).

Here every worker runs a :class:`Heartbeat` thread that

- refreshes ``{prefix}:alive:{worker}`` (TTL ``heartbeat_ttl_s``) every ``interval_s``, also
  while the main thread renders, and records which pools the worker serves
  (``engine.pools.PoolDirectory.record_beat``: the bot refuses jobs for a pool that has had no
  worker for a while); and
- checks ``{prefix}:running`` (job id -> worker, written by ``engine.tasks.run_job``): a job
  whose worker's alive key has expired is claimed by exactly one live worker (the HDEL that
  removes the entry is the claim) and put back at the front of its queue, spending one of its
  RQ retries; with none left it fails with a sentence the user can act on.

After a Redis outage every worker waits one ``heartbeat_ttl_s`` before it recovers others'
jobs: alive keys may have expired while Redis was away, and their workers need a beat to show
they are still rendering.

A worker stopped with a second SIGTERM gives its job back itself, without spending a retry
(:func:`requeue`). The job is then rendered again from the start; the terminal-event guard in
``engine.events`` makes sure its user sees one result.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import redis as redis_lib
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

from engine.events import EventStream, JobEvent
from engine.outage import CONNECTION_ERRORS, Outage
from engine.pools import PoolDirectory
from engine.queue import fetch_job, job_spec
from engine.redis_values import as_text
from engine.settings import Settings
from engine.tasks import running_key

log = logging.getLogger(__name__)

LOST_MESSAGE = (
    "the worker rendering this job stopped unexpectedly, also on the retry; "
    "please try again, and tell the team if it keeps happening (job {job_id})"
)


@dataclass(frozen=True)
class RecoveryConfig:
    """How fast a dead worker is noticed: at most ``heartbeat_ttl_s + interval_s`` seconds."""

    heartbeat_ttl_s: float = 15.0
    interval_s: float = 5.0

    def __post_init__(self) -> None:
        if self.interval_s * 2 > self.heartbeat_ttl_s:
            raise ValueError("heartbeat_ttl_s must be at least twice interval_s")


def alive_key(settings: Settings, worker_name: str) -> str:
    """The key a live worker keeps refreshing."""
    return f"{settings.key_prefix}:alive:{worker_name}"


class Heartbeat:
    """The background thread of one worker: keeps it alive and recovers others' jobs."""

    def __init__(
        self,
        *,
        redis: redis_lib.Redis,
        settings: Settings,
        worker_name: str,
        config: RecoveryConfig = RecoveryConfig(),  # noqa: B008 (frozen, shared on purpose)
        outage: Outage | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.worker_name = worker_name
        self.config = config
        # The worker's (its client reports there too), so one outage is logged once.
        self.outage = outage or Outage(name=f"heartbeat of {worker_name}", logger=log)
        self.pools = PoolDirectory(redis=redis, settings=settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{worker_name}", daemon=True
        )

    def start(self) -> None:
        """Mark the worker alive now, then keep doing so in the background."""
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and drop the alive key and the pools' record of this worker (a clean
        exit is not a crash; the pools it served stay seen, for a restart to pick up)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.config.interval_s + 5)
        try:
            self.redis.delete(alive_key(self.settings, self.worker_name))
            self.pools.forget(self.worker_name)
        except CONNECTION_ERRORS:  # stopping while Redis is away: the key expires by itself
            log.warning(
                "worker %s stopped without Redis; its alive key will expire", self.worker_name
            )

    def beat(self) -> None:
        """Refresh this worker's alive key and its record of the pools it serves."""
        ttl_ms = int(self.config.heartbeat_ttl_s * 1000)
        self.redis.set(alive_key(self.settings, self.worker_name), "1", px=ttl_ms)
        self.pools.record_beat(worker=self.worker_name, ttl_s=self.config.heartbeat_ttl_s)

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            try:
                self.beat()
                self.outage.recovered()
                if self.outage.seconds_since_end() > self.config.heartbeat_ttl_s:
                    recover_abandoned(redis=self.redis, settings=self.settings)
            except CONNECTION_ERRORS as exc:  # Redis away: one line, then keep beating
                self.outage.failed(exc)
            except Exception:
                log.exception("heartbeat of %s failed; retrying", self.worker_name)


def recover_abandoned(*, redis: redis_lib.Redis, settings: Settings) -> list[str]:
    """Requeue (or fail) every running job whose worker is no longer alive; return their ids."""
    recovered = []
    for raw_job, raw_worker in redis.hgetall(running_key(settings)).items():
        job_id, worker = as_text(raw_job), as_text(raw_worker)
        if redis.exists(alive_key(settings, worker)):
            continue
        if not redis.hdel(running_key(settings), job_id):
            continue  # another live worker claimed it first
        log.warning("worker %s died under job %s; recovering it", worker, job_id)
        _forget_worker(redis, worker)
        PoolDirectory(redis=redis, settings=settings).forget(worker)
        if requeue(redis=redis, settings=settings, job_id=job_id, spend_retry=True):
            recovered.append(job_id)
    return recovered


def requeue(*, redis: redis_lib.Redis, settings: Settings, job_id: str, spend_retry: bool) -> bool:
    """Put a started (or claimed) job back at the front of its queue (spending a retry if
    ``spend_retry``); with no retry left, fail it and tell the user. ``False`` if the job
    was neither."""
    job = fetch_job(redis=redis, settings=settings, job_id=job_id)
    if job is None:
        return False
    queue = Queue(job.origin, connection=redis, serializer=JSONSerializer)
    # Just fetched: its status was read with it. A job claimed to ride along in another's
    # call (engine.companions) is off its queue but still queued until its worker starts it.
    status = job.get_status(refresh=False)
    claimed = status == JobStatus.QUEUED and queue.get_job_position(job.id) is None
    if status != JobStatus.STARTED and not claimed:
        return False
    executions = job.get_executions()
    retry = not spend_retry or job.should_retry
    with redis.pipeline() as pipe:
        pipe.multi()  # RQ's enqueue_job wants a pipeline in MULTI before it buffers anything
        for execution in executions:
            execution.delete(job=job, pipeline=pipe)
        if retry:
            if spend_retry:
                job.retries_left = (job.retries_left or 1) - 1
            job.started_at = job.ended_at = None
            # At the front: its requester has waited once already.
            queue.enqueue_job(job, pipeline=pipe, at_front=True)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            queue.failed_job_registry.add(
                job, ttl=job.failure_ttl, exc_string="worker lost twice", pipeline=pipe
            )
        pipe.execute()
    if retry:
        log.warning("job %s is back at the front of %s", job_id, queue.name)
        return True
    log.error("job %s lost its worker and has no retry left; failing it", job_id)
    spec = job_spec(job=job)
    EventStream(redis=redis, settings=settings).publish_terminal(
        JobEvent(
            job_id=job_id,
            kind="failed",
            message=LOST_MESSAGE.format(job_id=job_id),
            error_kind="lost",
            origin=spec.origin if spec is not None else {},
        )
    )
    return True


def _forget_worker(redis: redis_lib.Redis, name: str) -> None:
    """Drop a dead worker's RQ registration now instead of when its keys expire."""
    key = f"rq:worker:{name}"
    queues = as_text(redis.hget(key, "queues") or b"")
    with redis.pipeline() as pipe:
        pipe.srem(REDIS_WORKER_KEYS, key)
        for queue in filter(None, queues.split(",")):
            pipe.srem(WORKERS_BY_QUEUE_KEY % queue, key)
        pipe.delete(key, f"{key}:executions")
        pipe.execute()
