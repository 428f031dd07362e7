"""The RQ job function, ``engine.tasks.run_job``, and the process-wide state it renders with.

RQ calls ``run_job(spec_json)`` inside a long-lived worker (``engine.worker``): the warm
pipeline cache, the artifact store, the catalog and the Redis client are set up once by the
worker with :func:`configure` and reused by every job, so a model loads once per process.
The jobs the worker claimed to ride along (``engine.companions``) render in the same calls
(``engine.render.render_group``); each gets the events below as if it ran alone, and its
outcome is left on its :class:`Member` for the worker to record with RQ.

Events: ``started``; ``progress`` at most once per ``settings.progress_interval_s`` and always
for the last step; then exactly one of ``done`` / ``failed`` / ``cancelled`` (guarded in Redis,
see ``engine.events``). A user error is reported with its own sentence and not retried; any
other exception is logged with its traceback and job id, retried while RQ has retries left,
and reported as "something went wrong on our side (job ...)" on the last attempt. Running
out of memory or of room in the artifact store is reported with its own sentence and not
retried either (``engine.errors.exhaustion_error``); after running out of memory the
pipeline cache frees what it can, and the worker goes on with its next job.

Redis outages (see ``engine.outage``): the worker's client waits out an outage, so what must
happen (the running entry, ``started``, the terminal event) happens once Redis is back. What may
be skipped is skipped while Redis is away instead of stalling the render: progress events and
cancel checks. A job that Redis came back without (restarted with no persistence) is dropped
with :class:`JobVanished`: nobody follows it any more, and the bot tells its requester.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import redis as redis_lib
from rq import get_current_job
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.timeouts import JobTimeoutException

from engine.errors import (
    CancelledError,
    OutOfMemory,
    UserError,
    exhaustion_error,
    internal_message,
)
from engine.events import EventStream, JobEvent
from engine.ledger import Ledger, usage_record
from engine.merging import CallCounters
from engine.metrics import observe_render
from engine.outage import Outage
from engine.queue import JobQueue
from engine.reloads import CatalogReloads
from engine.settings import Settings
from engine.spec import JobResult, JobSpec

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """What every job of one worker process shares. ``cache``, ``store`` and ``catalog`` are
    the renderer's (``engine.pipelines.PipelineCache``, ``engine.store``, ``engine.catalog``)."""

    settings: Settings
    redis: redis_lib.Redis
    worker_name: str
    cache: Any
    store: Any
    catalog: Any
    queue: JobQueue
    on_job_end: Callable[[int], None] | None = None  # jobs ended: the worker's stats update
    # What the worker knows about Redis being away (its client's retry policy reports here).
    outage: Outage = field(default_factory=lambda: Outage(name="worker"))
    # Keeps ``catalog`` at the generation an admin's /imagine reload asked for (engine.reloads).
    reloads: CatalogReloads | None = None
    # What its pipeline calls did (engine.merging), for the worker's stats.
    counters: CallCounters = field(default_factory=CallCounters)
    # Leader job id -> the jobs the worker claimed to ride along in its calls.
    companions: dict[str, list[Member]] = field(default_factory=dict)

    @property
    def events(self) -> EventStream:
        """The job event stream. It is the queue's own (same Redis, same settings), so the
        worker's jobs and its queue share one stream object instead of building a second."""
        return self.queue.events

    @property
    def running_key(self) -> str:
        """Hash job id -> worker name of the jobs being rendered (read by ``engine.recovery``)."""
        return running_key(self.settings)


_context: WorkerContext | None = None


def configure(context: WorkerContext | None) -> None:
    """Install (or with ``None`` remove) the state that :func:`run_job` renders with."""
    global _context
    _context = context


def installed() -> WorkerContext | None:
    """The installed context, if any."""
    return _context


def current_context() -> WorkerContext:
    """The installed context; a job run outside a Proofroom worker is a setup error."""
    if _context is None:
        raise RuntimeError("engine.tasks.run_job runs only inside a Proofroom worker")
    return _context


class JobVanished(BaseException):
    """Redis came back from an outage without the job being rendered (a restart without
    persistence). A BaseException so that the job's ``except Exception`` does not report it
    as a failure; the worker drops the job without writing anything about it."""


def running_key(settings: Settings) -> str:
    """Hash job id -> name of the worker rendering it."""
    return f"{settings.key_prefix}:running"


def forget_running(redis: redis_lib.Redis, settings: Settings, *, job_id: str, worker: str) -> None:
    """Drop ``job_id`` from the running hash if ``worker`` still holds it: another worker
    may have taken the job (a retry, a lost race) meanwhile, and its entry stays."""
    key = running_key(settings)
    with redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.hget(key, job_id) == worker.encode():
                pipe.multi()
                pipe.hdel(key, job_id)
                pipe.execute()
        except redis_lib.WatchError:
            pass  # the hash changed meanwhile: what is there now is not ours to drop


@dataclass(eq=False)
class Member:
    """A job of a group render (``engine.merging``): its spec and RQ job; ``outcome`` is
    what :func:`run_job` made of it, the result (a dict, RQ's job result) or the exception
    it ended with, None until then. ``queue`` and ``execution`` are the RQ queue and
    execution of a job that rides along (``engine.companions``)."""

    spec: JobSpec
    rq_job: Job | None
    queue: Queue | None = None
    execution: Execution | None = None
    outcome: Any = None


def run_job(spec_json: dict) -> dict:
    """Render one job, with the jobs the worker claimed to ride along in its calls
    (``WorkerContext.companions``), and publish each one's events; the return value is RQ's
    job result (JSON) of this job, whose exception, if it ends with one, is raised here.
    The companions' outcomes are left on their :class:`Member` for the worker."""
    ctx = current_context()
    leader = Member(spec=JobSpec.model_validate(spec_json), rq_job=get_current_job())
    members = [leader, *ctx.companions.get(leader.spec.id, [])]
    active = [member for member in members if not _ended_already(ctx, member)]
    if active:
        if ctx.reloads is not None:
            ctx.reloads.refresh()  # new files dropped and /imagine reload run since the last job
        with ctx.redis.pipeline() as pipe:
            for member in active:
                pipe.hset(ctx.running_key, member.spec.id, ctx.worker_name)
            pipe.execute()
        try:
            for member in active:
                ctx.events.publish(
                    JobEvent(job_id=member.spec.id, kind="started", origin=member.spec.origin)
                )
            _render(ctx, active)
        finally:
            ctx.redis.hdel(ctx.running_key, *(member.spec.id for member in active))
            if ctx.on_job_end is not None:
                ctx.on_job_end(len(active))
    if isinstance(leader.outcome, BaseException):
        raise leader.outcome
    return leader.outcome


def _ended_already(ctx: WorkerContext, member: Member) -> bool:
    spec = member.spec
    ended = ctx.events.terminal_kind(spec.id)
    if ended is not None:
        # A retry of a job that ended just before its worker died: nothing left to do.
        log.info("job %s already ended (%s); not rendering it again", spec.id, ended)
        member.outcome = {"status": ended, "duplicate": True}
        return True
    if ctx.queue.is_cancelled(spec.id):
        member.outcome = _cancelled(ctx, spec, "cancelled before it started")
        return True
    return False


def _render(ctx: WorkerContext, members: list[Member]) -> None:
    from engine.render import RenderRequest, render_group  # torch: only inside a worker

    lifelines = [Lifeline(ctx, member.spec) for member in members]
    notes: list[list[str]] = [[] for _ in members]  # e.g. images left out as blank
    requests = [
        RenderRequest(
            member.spec,
            on_progress=Progress(
                ctx.events,
                member.spec,
                ctx.settings.progress_interval_s,
                outage=ctx.outage,
                lifeline=lifeline,
            ),
            should_cancel=_cancel_check(ctx, member.spec),
            on_note=note.append,
        )
        for member, lifeline, note in zip(members, lifelines, notes, strict=True)
    ]
    started = time.monotonic()
    wall_started = time.time()
    gpu_seconds: dict[str, float] = {}  # each job's share of the calls it was in
    try:
        outcomes: list[Any] = render_group(
            requests,
            cache=ctx.cache,
            store=ctx.store,
            catalog=ctx.catalog,
            counters=ctx.counters,
            gpu_seconds=gpu_seconds,
        )
    except Exception as exc:  # nothing rendered: the model, say, could not be loaded
        outcomes = [exc] * len(members)
    outcomes = _exhaustion(ctx, members, outcomes)
    observe_render(model=members[0].spec.model, seconds=time.monotonic() - started)
    ctx.counters.merged += len(members) - 1
    for member, outcome, lifeline, note in zip(members, outcomes, lifelines, notes, strict=True):
        # Before the job's end is published, so the bot's review finds the record.
        _record_usage(
            ctx,
            member,
            outcome,
            gpu_s=gpu_seconds.get(member.spec.id, 0.0),
            started_at=wall_started,
        )
        try:
            member.outcome = _settle(ctx, member, outcome, lifeline=lifeline, notes=note)
        except (Exception, JobVanished) as exc:  # what RQ records for this job
            member.outcome = exc


def _exhaustion(ctx: WorkerContext, members: list[Member], outcomes: list[Any]) -> list[Any]:
    """``outcomes`` with each failure for want of memory or of room in the store replaced
    by the user error it stands for (``engine.errors.exhaustion_error``: a sentence, no
    retry, since the same job would fail the same way). After running out of memory the
    cache frees what it can, so the next job gets the memory this one could not."""
    mapped: list[Any] = []
    out_of_memory = False
    for member, outcome in zip(members, outcomes, strict=True):
        error = None
        if isinstance(outcome, Exception) and not isinstance(outcome, UserError):
            error = exhaustion_error(outcome, job_id=member.spec.id)
        if error is None:
            mapped.append(outcome)
            continue
        # One line with what the allocator or the file system said: the cause is known.
        log.warning("job %s: %s (%s)", member.spec.id, error.kind, outcome)
        if isinstance(error, OutOfMemory):
            out_of_memory = True
            # Its traceback holds the frames of the failed call, and through them the
            # tensors allocated before the one that failed: let them go first.
            traceback.clear_frames(outcome.__traceback__)
        mapped.append(error)
    if out_of_memory:
        ctx.cache.free_memory()
    return mapped


def _record_usage(
    ctx: WorkerContext, member: Member, outcome: Any, *, gpu_s: float, started_at: float
) -> None:
    """Write the job's usage record (``engine.ledger``). Best effort: a ledger that cannot
    be written is logged and never fails the job its requester is waiting for."""
    spec = member.spec
    enqueued = member.rq_job.enqueued_at if member.rq_job is not None else None
    if enqueued is not None and enqueued.tzinfo is None:
        enqueued = enqueued.replace(tzinfo=UTC)  # RQ keeps UTC without saying so
    queued_at = enqueued.timestamp() if enqueued is not None else spec.created_at
    if isinstance(outcome, JobResult):
        status, images = "done", list(outcome.images)
    else:
        status, images = ("cancelled" if isinstance(outcome, CancelledError) else "failed"), []
    try:
        record, outcomes = usage_record(
            spec,
            status=status,  # type: ignore[arg-type]
            images=images,
            gpu_s=gpu_s,
            queue_wait_s=started_at - queued_at,
            ended_at=time.time(),
        )
        Ledger(
            redis=ctx.redis,
            key_prefix=ctx.settings.key_prefix,
            ttl_s=ctx.settings.ledger_retention_s,
        ).write(record, outcomes)
    except Exception:
        log.warning("job %s: its usage record was not written", spec.id, exc_info=True)


def _cancel_check(ctx: WorkerContext, spec: JobSpec) -> Callable[[], bool]:
    def cancelled() -> bool:
        # While Redis is away nobody can cancel: render on rather than wait.
        return bool(ctx.outage.attempt(lambda: ctx.queue.is_cancelled(spec.id), default=False))

    return cancelled


def _settle(
    ctx: WorkerContext, member: Member, outcome: Any, *, lifeline: Lifeline, notes: list[str]
) -> dict:
    """Publish what ``outcome`` means for ``member``'s requester; return its RQ result, or
    raise what RQ should record (an internal error, retried while it can; a timeout)."""
    spec = member.spec
    job = member.rq_job
    if isinstance(outcome, CancelledError):
        return _cancelled(ctx, spec, "cancelled while rendering")
    if isinstance(outcome, UserError):
        log.info("job %s: %s (%s)", spec.id, outcome.message, outcome.kind)
        _failed(ctx, spec, outcome.message, outcome.kind)
        return {"status": "failed", "error_kind": outcome.kind}
    if isinstance(outcome, JobTimeoutException):
        limit = job.timeout if job is not None and job.timeout else ctx.settings.job_timeout_s
        log.error("job %s ran past %s s and was stopped", spec.id, limit)
        message = (
            f"the job took longer than {limit} s and was stopped; "
            "try fewer images, fewer steps or a smaller size"
        )
        _failed(ctx, spec, message, "timeout")
        if job is not None:
            job.retries_left = 0  # the same job would only time out again
        raise outcome
    if isinstance(outcome, Exception):
        retry = job is not None and job.should_retry
        log.error(
            "job %s failed on worker %s%s",
            spec.id,
            ctx.worker_name,
            " (will retry)" if retry else "",
            exc_info=outcome,
        )
        if not retry:
            _failed(ctx, spec, internal_message(spec.id), "internal")
        raise outcome  # RQ records the failure (and retries while it can)
    result: JobResult = outcome
    lifeline.check(wait=True)
    if (
        ctx.events.publish_terminal(
            JobEvent(
                job_id=spec.id,
                kind="done",
                result=result,
                message=" ".join(notes),
                origin=spec.origin,
            )
        )
        is None
    ):
        log.warning("job %s had already ended; its second result is not published", spec.id)
    log.info("job %s done: %d image(s) in %.1f s", spec.id, len(result.images), result.total_s)
    for note in notes:
        log.info("job %s: %s", spec.id, note)
    return result.model_dump(mode="json")


class Lifeline:
    """Notices that Redis came back without the job (restarted with no persistence) and
    raises :class:`JobVanished`: one EXISTS after each lost connection, none otherwise."""

    def __init__(self, ctx: WorkerContext, spec: JobSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self._reconnects = ctx.outage.reconnects

    def check(self, *, wait: bool = False) -> None:
        """Raise :class:`JobVanished` if a connection was lost since the last check and the
        job is gone. With ``wait``, first wait for an outage in progress to end (before the
        job's result is published: into a Redis that lost the job, it would reach nobody)."""
        outage = self.ctx.outage
        if wait:
            self.ctx.redis.ping()  # the worker's client waits here while Redis is away
        reconnects = outage.reconnects
        if reconnects == self._reconnects:
            return
        if wait:
            exists: bool | None = self.ctx.queue.exists(self.spec.id)
        else:
            exists = outage.attempt(lambda: self.ctx.queue.exists(self.spec.id), default=None)
        if exists is None:
            return  # Redis is away again: look after the next outage
        self._reconnects = reconnects
        if not exists:
            raise JobVanished(self.spec.id)


class Progress:
    """``on_progress`` callback: publishes step k of n at most every ``interval_s`` seconds,
    and always the last step, so chat updates stay within rate limits. While Redis is away
    the steps are skipped (the render goes on); after an outage it checks ``lifeline``."""

    def __init__(
        self,
        events: EventStream,
        spec: JobSpec,
        interval_s: float,
        *,
        outage: Outage | None = None,
        lifeline: Lifeline | None = None,
    ) -> None:
        self.events = events
        self.spec = spec
        self.interval_s = interval_s
        self.outage = outage
        self.lifeline = lifeline
        self._last = float("-inf")

    def __call__(self, step: int, total: int) -> None:
        if self.lifeline is not None:
            self.lifeline.check()
        now = time.monotonic()
        if step < total and now - self._last < self.interval_s:
            return
        self._last = now
        event = JobEvent(
            job_id=self.spec.id, kind="progress", step=step, total=total, origin=self.spec.origin
        )
        if self.outage is None:
            self.events.publish(event)
        else:
            self.outage.attempt(lambda: self.events.publish(event), default=None)


def _cancelled(ctx: WorkerContext, spec: JobSpec, message: str) -> dict:
    ctx.events.publish_terminal(
        JobEvent(job_id=spec.id, kind="cancelled", message=message, origin=spec.origin)
    )
    ctx.redis.delete(ctx.queue.cancel_key(spec.id))
    log.info("job %s %s", spec.id, message)
    return {"status": "cancelled"}


def _failed(ctx: WorkerContext, spec: JobSpec, message: str, kind: str) -> None:
    ctx.events.publish_terminal(
        JobEvent(
            job_id=spec.id, kind="failed", message=message, error_kind=kind, origin=spec.origin
        )
    )
