"""The jobs that ride along in another job's pipeline call, on RQ's side: claimed from the
queues so that no other worker takes them, started, and finished with RQ's own
bookkeeping (``engine.merging`` says which jobs qualify; ``engine.worker`` calls this).

Claim. One MULTI/EXEC removes the job from its queue (LREM: only one worker can succeed)
and records it in ``{prefix}:running`` under this worker (HSETNX), so from that instant a
crash of this worker gives the job back (``engine.recovery``). A worker that lost the race
(LREM found nothing) takes its running entry back unless the winner already wrote its own.

Lifecycle. A claimed job gets an RQ execution and the started status, as the job the worker
popped does; its outcome, set by ``engine.tasks.run_job`` while it renders the group, is
then finalised as RQ would (result saved, or failure handled with its retries). A companion
left without an outcome (a forced stop cut the render short) goes back to the front of its
queue, its retry unspent.
"""

from __future__ import annotations

import logging

import redis as redis_lib
from rq import SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from engine import merging
from engine.catalog import Catalog
from engine.queue import PRIORITIES, job_spec, parse_queue_name, queue_name
from engine.recovery import requeue
from engine.settings import Settings
from engine.spec import JobSpec
from engine.tasks import Member, WorkerContext, forget_running, running_key

log = logging.getLogger(__name__)


def claim(
    *,
    redis: redis_lib.Redis,
    settings: Settings,
    catalog: Catalog,
    leader: JobSpec,
    worker_name: str,
    device: str,
    pool: str | None = None,
) -> list[Member]:
    """Take the waiting jobs that ride along with ``leader`` (``engine.merging.companions``)
    off their queues, atomically, within the model's batch cap on ``device``; none when
    ``leader`` cannot be merged. Only the queues of ``pool`` are read (default: its model's
    pool), the pool the worker popped ``leader`` from: a companion has the same model."""
    if merging.merge_key(leader) is None or leader.model not in catalog.models:
        return []
    model = catalog.model(leader.model)
    cap = merging.max_batch(model, device=device)
    if leader.count >= cap:
        return []
    candidates: list[tuple[tuple[Job, Queue], JobSpec]] = []
    for priority in PRIORITIES:  # interactive first, then bulk: see engine.merging
        queue = Queue(
            queue_name(settings, priority, pool or model.pool),
            connection=redis,
            serializer=JSONSerializer,
        )
        ids = queue.get_job_ids(0, merging.SCAN_DEPTH)
        for job in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer):
            spec = job_spec(job=job) if job is not None else None
            if job is not None and spec is not None:
                candidates.append(((job, queue), spec))
    members = []
    for (job, queue), spec in merging.companions(leader, candidates, cap=cap):
        if _take(redis, settings, queue=queue, job=job, job_id=spec.id, worker=worker_name):
            members.append(Member(spec=spec, rq_job=job, queue=queue))
    return members


def _take(
    redis: redis_lib.Redis,
    settings: Settings,
    *,
    queue: Queue,
    job: Job,
    job_id: str,
    worker: str,
) -> bool:
    running = running_key(settings)
    with redis.pipeline() as pipe:
        pipe.lrem(queue.key, 1, job.id)
        pipe.hsetnx(running, job_id, worker)
        removed, wrote = pipe.execute()
    if removed:
        return True
    if wrote:  # lost the race after all: take back the entry, unless the winner wrote its own
        forget_running(redis, settings, job_id=job_id, worker=worker)
    return False


def start(worker: SimpleWorker, job: Job, *, context: WorkerContext | None) -> list[Member]:
    """Claim the companions of ``job``, the job ``worker`` just took off its queue, and
    start each as RQ starts a job (an execution, the started status); none when
    micro-batching is off or ``job`` has no readable spec."""
    if context is None or not context.settings.micro_batching:
        return []
    leader = job_spec(job=job)
    if leader is None:
        return []
    # The pool of the queue it came from: a reload may have moved its model since.
    popped_from = parse_queue_name(context.settings, job.origin or "")
    members = claim(
        redis=worker.connection,
        settings=context.settings,
        catalog=context.catalog,
        leader=leader,
        worker_name=worker.name,
        device=context.cache.device,
        pool=popped_from[1] if popped_from else None,
    )
    for member in members:
        assert member.rq_job is not None
        member.execution = worker.prepare_execution(member.rq_job)
        worker.prepare_job_execution(member.rq_job)
    if members:
        ids = ", ".join(member.spec.id for member in members)
        log.info("job %s: %s ride along in its calls", leader.id, ids)
    return members


def finish(worker: SimpleWorker, members: list[Member], *, settings: Settings) -> None:
    """Record each companion's outcome as RQ records a job's (the worker's own hooks
    included); one without an outcome (the worker is stopping, or the leader's render was
    cut short) goes back to the front of its queue, its retry unspent."""
    stopping: BaseException | None = None
    for member in members:
        job, queue, execution = member.rq_job, member.queue, member.execution
        assert job is not None and queue is not None and execution is not None
        try:
            if member.outcome is None:
                worker.executions.pop(execution.id, None)
                requeue(
                    redis=worker.connection,
                    settings=settings,
                    job_id=member.spec.id,
                    spend_retry=False,
                )
            elif isinstance(member.outcome, BaseException):
                exc = member.outcome
                worker._finalize_failure(job, queue, execution, (type(exc), exc, exc.__traceback__))
            else:
                worker._finalize_success(job, queue, execution, member.outcome)
        except SystemExit as exc:  # a forced stop while finishing: hand the rest back first
            stopping = exc
            member.outcome = None
    if stopping is not None:
        raise stopping
