"""The RQ job function, ``engine.tasks.run_job``, and the process-wide state it renders with.

RQ calls ``run_job(spec_json)`` inside a long-lived worker (``engine.worker``): the warm
pipeline cache, the artifact store, the catalog and the Redis client are set up once by the
worker with :func:`configure` and reused by every job, so a model loads once per process.

Events: ``started``; ``progress`` at most once per ``settings.progress_interval_s`` and always
for the last step; then exactly one of ``done`` / ``failed`` / ``cancelled`` (guarded in Redis,
see ``engine.events``). A user error is reported with its own sentence and not retried; any
other exception is logged with its traceback and job id, retried while RQ has retries left,
and reported as "something went wrong on our side (job ...)" on the last attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from engine.errors import CancelledError, UserError, internal_message
from engine.events import EventStream, JobEvent
from engine.queue import JobQueue
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

    try:
        result = render(
            spec,
            cache=ctx.cache,
            store=ctx.store,
            catalog=ctx.catalog,
            on_progress=Progress(ctx.events, spec, ctx.settings.progress_interval_s),
            should_cancel=lambda: ctx.queue.is_cancelled(spec.id),
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
    if (
        ctx.events.publish_terminal(
            JobEvent(job_id=spec.id, kind="done", result=result, origin=spec.origin)
        )
        is None
    ):
        log.warning("job %s had already ended; its second result is not published", spec.id)
    log.info("job %s done: %d image(s) in %.1f s", spec.id, len(result.images), result.total_s)
    return result.model_dump(mode="json")


class Progress:
    """``on_progress`` callback: publishes step k of n at most every ``interval_s`` seconds,
    and always the last step, so chat updates stay within rate limits."""

    def __init__(self, events: EventStream, spec: JobSpec, interval_s: float) -> None:
        self.events = events
        self.spec = spec
        self.interval_s = interval_s
        self._last = float("-inf")

    def __call__(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step < total and now - self._last < self.interval_s:
            return
        self._last = now
        self.events.publish(
            JobEvent(
                job_id=self.spec.id,
                kind="progress",
                step=step,
                total=total,
                origin=self.spec.origin,
            )
        )


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
