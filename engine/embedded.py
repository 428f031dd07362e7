"""The embedded default: without ``REDIS_URL`` everything runs in one process.

:func:`redis_for` then returns a process-wide fakeredis client (one shared ``FakeServer``), and
:func:`start_embedded_worker` runs the same RQ worker as ``proofroom worker`` in a daemon
thread. The bot, the queue, the event stream and the worker all talk to that fake server, so
``make demo``, ``proofroom generate`` and ``proofroom batch`` need nothing installed but the
package. With a URL the same two calls give a real client and an in-process worker on the
real server.

The chat processes (``proofroom slack``, ``discord``, ``shell``) take :func:`open_chat_redis`
instead: without ``REDIS_URL`` it runs a ``redis-server`` of the data folder
(:mod:`engine.private_redis`) when one is installed, so their threads, votes and ledger
survive a restart; else the in-memory server, with a warning that nothing does.

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
from engine.private_redis import PrivateRedis, PrivateRedisError, find_binary, is_off
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


class ChatRedis:
    """The Redis a chat process keeps its state in, and whether it survives a restart.
    :meth:`close` (or leaving the ``with`` block) lets go of the private server."""

    def __init__(
        self,
        *,
        client: redis_lib.Redis,
        durable: bool,
        where: str,
        server: PrivateRedis | None = None,
    ) -> None:
        self.client = client
        self.durable = durable
        self.where = where  # for the log: where the state is kept
        self.server = server

    def close(self) -> None:
        """Leave the private server (stopped when no other process uses it); idempotent."""
        if self.server is not None:
            self.server.close()

    def __enter__(self) -> ChatRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_chat_redis(settings: Settings) -> ChatRedis:
    """The Redis of a chat process (``proofroom slack``, ``discord``, ``shell``):
    ``REDIS_URL``'s; without it the data folder's private ``redis-server``, started here or
    joined when another chat process on the folder runs it (:mod:`engine.private_redis`);
    without a ``redis-server`` the in-memory one, announced by a one-line warning that
    nothing survives a restart. Close it on the way out (also done at exit).

    Raises :class:`~engine.private_redis.PrivateRedisError` (a sentence) when the
    configured server cannot start."""
    if settings.redis_url:
        client = redis_lib.Redis.from_url(settings.redis_url)
        return ChatRedis(client=client, durable=True, where="REDIS_URL")
    binary = find_binary(settings.redis_server)
    if binary is None:
        why = (
            "PROOFROOM_REDIS_SERVER=off"
            if is_off(settings.redis_server)
            else f"no {settings.redis_server} on PATH"
        )
        log.warning(
            "%s: state kept in memory, nothing (threads, votes, queued jobs) survives a "
            "restart; install redis-server or set REDIS_URL to keep it",
            why,
        )
        return ChatRedis(client=redis_for(settings), durable=False, where="memory")
    folder = settings.data_dir / "redis"
    server = PrivateRedis(binary=binary, folder=folder)
    client = server.open()
    where = f"{folder} by a private redis-server, pid {server.pid}"
    if not server.started:
        where += ", shared with another chat process"
    log.info("state kept in %s", where)
    return ChatRedis(client=client, durable=True, where=where, server=server)


def chat_redis_or_none(settings: Settings) -> ChatRedis | None:
    """:func:`open_chat_redis`, or None after logging its sentence when the private
    ``redis-server`` cannot start (the chat process then exits with status 2)."""
    try:
        return open_chat_redis(settings)
    except PrivateRedisError as exc:
        log.error("%s", exc)
        return None


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
