"""The RQ job function, ``engine.tasks.run_job``, and the process-wide state it renders with.

RQ calls ``run_job(spec_json)`` inside a long-lived worker (``engine.worker``): the warm
pipeline cache, the artifact store, the catalog and the Redis client are set up once by the
worker with :func:`configure` and reused by every job, so a model loads once per process.

Events: ``started``; ``progress`` at most once per ``settings.progress_interval_s`` and always
for the last step; then exactly one of ``done`` / ``failed`` / ``cancelled`` (guarded in Redis,
see ``engine.events``). A user error is reported with its own sentence and not retried; any
other exception is logged with its traceback and job id, retried while RQ has retries left,
and reported as "something went wrong on our side (job ...)" on the last attempt.

Redis outages (see ``engine.outage``): the worker's client waits out an outage, so what must
happen (the running entry, ``started``, the terminal event) happens once Redis is back. What may
be skipped is skipped while Redis is away instead of stalling the render: progress events and
cancel checks. A job that Redis came back without (restarted with no persistence) is dropped
with :class:`JobVanished`: nobody follows it any more, and the bot tells its requester.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from engine.errors import CancelledError, UserError, internal_message
from engine.events import EventStream, JobEvent
from engine.outage import Outage
from engine.queue import JobQueue
from engine.reloads import CatalogReloads
from engine.settings import Settings
from engine.spec import JobSpec

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
    on_job_end: Callable[[], None] | None = None  # e.g. the worker's stats update
    # What the worker knows about Redis being away (its client's retry policy reports here).
    outage: Outage = field(default_factory=lambda: Outage(name="worker"))
    # Keeps ``catalog`` at the generation an admin's /imagine reload asked for (engine.reloads).
    reloads: CatalogReloads | None = None

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


def run_job(spec_json: dict) -> dict:
    """Render one job and publish its events; the return value is RQ's job result (JSON)."""
    ctx = current_context()
    spec = JobSpec.model_validate(spec_json)
    ended = ctx.events.terminal_kind(spec.id)
    if ended is not None:
        # A retry of a job that ended just before its worker died: nothing left to do.
        log.info("job %s already ended (%s); not rendering it again", spec.id, ended)
        return {"status": ended, "duplicate": True}
    if ctx.queue.is_cancelled(spec.id):
        return _cancelled(ctx, spec, "cancelled before it started")

    if ctx.reloads is not None:
        ctx.reloads.refresh()  # new files dropped and /imagine reload run since the last job
    ctx.redis.hset(ctx.running_key, spec.id, ctx.worker_name)
    try:
        ctx.events.publish(JobEvent(job_id=spec.id, kind="started", origin=spec.origin))
        return _render(ctx, spec)
    finally:
        ctx.redis.hdel(ctx.running_key, spec.id)
        if ctx.on_job_end is not None:
            ctx.on_job_end()


def _render(ctx: WorkerContext, spec: JobSpec) -> dict:
    from engine.render import render  # torch: only ever imported inside a worker

    lifeline = Lifeline(ctx, spec)
    notes: list[str] = []  # e.g. images left out because they came out blank
    try:
        result = render(
            spec,
            cache=ctx.cache,
            store=ctx.store,
            catalog=ctx.catalog,
            on_progress=Progress(
                ctx.events,
                spec,
                ctx.settings.progress_interval_s,
                outage=ctx.outage,
                lifeline=lifeline,
            ),
            # While Redis is away nobody can cancel: render on rather than wait.
            should_cancel=lambda: ctx.outage.attempt(
                lambda: ctx.queue.is_cancelled(spec.id), default=False
            ),
            on_note=notes.append,
        )
    except CancelledError:
        return _cancelled(ctx, spec, "cancelled while rendering")
    except UserError as exc:
        log.info("job %s: %s (%s)", spec.id, exc.message, exc.kind)
        _failed(ctx, spec, exc.message, exc.kind)
        return {"status": "failed", "error_kind": exc.kind}
    except JobTimeoutException:
        job = get_current_job()
        limit = job.timeout if job is not None and job.timeout else ctx.settings.job_timeout_s
        log.error("job %s ran past %s s and was stopped", spec.id, limit)
        message = (
            f"the job took longer than {limit} s and was stopped; "
            "try fewer images, fewer steps or a smaller size"
        )
        _failed(ctx, spec, message, "timeout")
        if job is not None:
            job.retries_left = 0  # the same job would only time out again
        raise
    except Exception:
        job = get_current_job()
        retry = job is not None and job.should_retry
        log.exception(
            "job %s failed on worker %s%s",
            spec.id,
            ctx.worker_name,
            " (will retry)" if retry else "",
        )
        if not retry:
            _failed(ctx, spec, internal_message(spec.id), "internal")
        raise  # RQ records the failure (and retries while it can)
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
