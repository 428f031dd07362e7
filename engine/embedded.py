"""The embedded default: without ``REDIS_URL`` everything runs in one process.

:func:`redis_for` then returns a process-wide fakeredis client (one shared ``FakeServer``), and
:func:`start_embedded_worker` runs the same RQ worker as ``proofroom worker`` in a daemon
thread. The bot, the queue, the event stream and the worker all talk to that fake server, so
``make demo`` and ``proofroom shell`` need nothing installed but the package. With a URL the
same two calls give a real client and an in-process worker on the real server.

Two things differ from the process worker, both forced by running in a thread: signal handlers
can only be installed by the main thread (the host process keeps its own), and job timeouts use
``TimerDeathPenalty`` because SIGALRM is delivered only to the main thread.

This module does not import torch; starting the worker does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import fakeredis
import redis as redis_lib
from rq.timeouts import TimerDeathPenalty

from engine import tasks
from engine.recovery import Heartbeat, RecoveryConfig
from engine.settings import Settings
from engine.worker import ProofroomWorker, make_worker, start_context

log = logging.getLogger(__name__)

_server_lock = threading.Lock()
_fake: fakeredis.FakeRedis | None = None


def redis_for(settings: Settings) -> redis_lib.Redis:
    """A client for ``settings.redis_url``; without one, the process-wide in-memory server."""
    if settings.redis_url:
        return redis_lib.Redis.from_url(settings.redis_url)
    global _fake
    with _server_lock:
        if _fake is None:
            _fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        return _fake


class ThreadWorker(ProofroomWorker):
    """The worker run in a thread: no signal handlers, timer-based job timeouts."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # only the main thread may; the host process handles its own signals


class EmbeddedWorker:
    """Handle of a worker thread; :meth:`stop` ends it after the current job."""

    def __init__(self, *, worker: ThreadWorker, heartbeat: Heartbeat, thread: threading.Thread):
        self.worker = worker
        self.heartbeat = heartbeat
        self.thread = thread

    @property
    def name(self) -> str:
        """The worker's name (its stats live under ``{prefix}:worker:{name}:stats``)."""
        return self.worker.name

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop after its current job and wait up to ``timeout`` seconds."""
        self.worker.request_stop_soon()
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("embedded worker %s still busy after %.0f s", self.name, timeout)
        self.heartbeat.stop()
        if tasks._context is not None and tasks._context.worker_name == self.name:
            tasks.configure(None)


def start_embedded_worker(
    *,
    settings: Settings,
    redis: redis_lib.Redis,
    families: list[str] | None = None,
    preload: bool = True,
    recovery: RecoveryConfig = RecoveryConfig(),  # noqa: B008 (frozen)
) -> EmbeddedWorker:
    """Start a worker in a daemon thread of this process; returns once its model is warm."""
    worker = make_worker(
        settings=settings, redis=redis, families=families, worker_class=ThreadWorker
    )
    heartbeat = Heartbeat(redis=redis, settings=settings, worker_name=worker.name, config=recovery)
    heartbeat.start()
    try:
        start_context(
            settings=settings, redis=redis, name=worker.name, preload=preload, families=families
        )
    except BaseException:  # no worker will run: its heartbeat must not say it is alive
        heartbeat.stop()
        raise

    def work() -> None:
        try:
            worker.work(burst=False, with_scheduler=False)
        except Exception:
            log.exception("embedded worker %s crashed", worker.name)

    thread = threading.Thread(target=work, name=f"worker-{worker.name}", daemon=True)
    thread.start()
    log.info("embedded worker %s serving %s", worker.name, ", ".join(worker.queue_names()))
    return EmbeddedWorker(worker=worker, heartbeat=heartbeat, thread=thread)


@contextmanager
def worker_if_needed(
    *, settings: Settings, redis: redis_lib.Redis, wanted: bool = False
) -> Iterator[EmbeddedWorker | None]:
    """A worker in this process for the ``with`` block when ``wanted`` (``--embedded-worker``)
    or when there is no ``REDIS_URL`` (the embedded default: no other process could render);
    else None, and jobs wait for ``proofroom worker`` elsewhere. Stopped on leaving."""
    if not (wanted or not settings.redis_url):
        yield None
        return
    worker = start_embedded_worker(settings=settings, redis=redis)
    try:
        yield worker
    finally:
        worker.stop()
