"""``proofroom worker``: one long-lived process per GPU that serves the queues.

It is an RQ ``SimpleWorker`` (jobs run in this process, no fork per job) so pipelines stay warm
in the ``PipelineCache`` and CUDA is never used after a fork. At start it preloads
``settings.default_model``. It listens on the interactive queue of each worker pool it serves
(``--pools sdxl,turbo``, ``--family sd15``; neither: every pool, see ``engine.pools``), then
the bulk ones (see ``engine.queue``).

Stopping: the first SIGTERM/SIGINT lets the current job finish, then exits; a second one stops
at once and puts the job back at the front of its queue (without spending a retry).

Redis outages: every command of the worker's client waits until Redis answers again
(``engine.outage``), so a restart at any moment, RQ's bookkeeping included, costs a pause and
two log lines, not the process. A job that Redis came back without (no persistence) is
dropped (``engine.tasks.JobVanished``); a worker that Redis forgot registers again. Stopping
while Redis is away: an idle worker, or one stopped a second time, stops waiting and exits.

Micro-batching: before it runs a job, the worker claims the waiting jobs that can share its
pipeline calls (``engine.merging`` says which, ``engine.companions`` takes them off their
queues atomically); they render in the same calls, each with its own events, and RQ records
each one's result as usual. ``PROOFROOM_MICRO_BATCHING=0`` turns it off.

Observability: ``{prefix}:worker:{name}:stats`` is a hash with ``jobs`` (jobs run), ``loads``
(model loads in total), ``loads:{model}``, ``pid``, and what the pipeline calls did: ``calls``,
``images``, ``merged`` (jobs that rode along in another job's calls) and ``busy_s`` (seconds
inside the pipeline); ``compiles`` and ``compile_s`` (``PROOFROOM_COMPILE_UNET``). Tests, the
bench and operators read it from outside the process. ``--metrics-port N`` serves Prometheus
metrics of this process (the render-seconds histogram, ``engine/metrics.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import uuid
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

import redis as redis_lib
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker_registration import REDIS_WORKER_KEYS

from engine import companions
from engine.catalog import check_pool_name
from engine.logs import configure_logging
from engine.merging import CallCounters
from engine.metrics import MetricsServer
from engine.model_folders import load_catalog
from engine.outage import CONNECTION_ERRORS, Outage, login_refused, patient_redis
from engine.pools import served_pools
from engine.queue import FAMILIES, JobQueue, queue_names, rq_prefix
from engine.recovery import Heartbeat, RecoveryConfig, requeue
from engine.settings import Settings, get_settings
from engine.tasks import JobVanished, WorkerContext, configure, forget_running, running_key
from engine.tasks import installed as tasks_context

log = logging.getLogger(__name__)

W = TypeVar("W", bound="ProofroomWorker")

# What sys.exc_info() returns, as RQ hands it to its failure hooks.
ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

# How long the worker blocks on the queues before it checks whether it should stop.
POLL_S = 1


class ForcedShutdown(BaseException):
    """Raised into a running job by the second stop signal (a BaseException so that the job's
    own ``except Exception`` handlers do not report it as a failure)."""


class ProofroomWorker(SimpleWorker):
    """``SimpleWorker`` that stops promptly when asked and gives back a job it abandons."""

    proofroom_settings: Settings | None = None  # set by make_worker; needed to requeue
    outage: Outage | None = None  # set by make_worker: its client reports outages here
    _reconnects_seen = 0

    def request_stop_soon(self) -> None:
        """Stop after the current job (or within ``POLL_S`` when idle); safe from any thread."""
        self._stop_requested = True

    def subscribe(self) -> None:
        """RQ's command channel (``rq.command``), read by a thread that waits ``POLL_S``
        between reads instead of RQ's 60 s: stopping the worker joins that thread, and a
        read that began just before the unsubscribe would hold the stop for the whole wait
        (seen as 30 s test teardowns, and a worker slow to exit on SIGTERM)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ: None
            sleep_time=POLL_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # RQ blocks for up to worker_ttl - 15 s and loops on timeouts without looking at
        # _stop_requested; short polls let a stop (or a thread's stop) take effect quickly.
        if timeout is None:  # burst: non-blocking
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        while not self._stop_requested:
            self._register_again_if_forgotten()
            result = super().dequeue_job_and_maintain_ttl(POLL_S, max_idle_time=POLL_S)
            if result is not None:
                return result
        raise StopRequested()

    def _register_again_if_forgotten(self) -> None:
        """After a lost connection: a Redis that came back empty no longer lists this worker
        (``rq info``, the dashboards, ``wait_ready`` in tests); register it again."""
        if self.outage is None or self.outage.reconnects == self._reconnects_seen:
            return
        self._reconnects_seen = self.outage.reconnects
        if self.connection.sismember(REDIS_WORKER_KEYS, self.key):
            return
        log.warning("worker %s: Redis came back without this worker; registering again", self.name)
        self.connection.delete(self.key)  # what RQ rewrote meanwhile (state, heartbeat)
        self.register_birth()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job``, with the waiting jobs that can share its pipeline calls
        (``engine.merging``) claimed first, and each of those finished as RQ finishes a job
        once the group has rendered (``engine.companions``)."""
        context = tasks_context()
        if context is None:
            return super().execute_job(job, queue)
        leader_id = job.id.removeprefix(f"{rq_prefix(context.settings)}-")
        # Taken off its queue: from now on a crash of this process gives the job back
        # (engine.recovery), not only once run_job records it, after the companions' claim.
        self.connection.hset(running_key(context.settings), leader_id, self.name)
        held = [leader_id]
        try:
            members = companions.start(self, job, context=context)
            if not members:
                return super().execute_job(job, queue)
            held += [member.spec.id for member in members]
            context.companions[leader_id] = members
            try:
                super().execute_job(job, queue)
            finally:
                context.companions.pop(leader_id, None)
                companions.finish(self, members, settings=context.settings)
        finally:
            # run_job drops the entries of the jobs it rendered; a companion cancelled after
            # its claim was never rendered, and its claim's entry would stay.
            for job_id in held:
                forget_running(self.connection, context.settings, job_id=job_id, worker=self.name)

    def request_stop(self, signum: int, frame: Any) -> None:
        """First signal: finish the current job (waiting for Redis to publish it, if it is
        away), then exit; an idle worker exits now, without waiting for Redis."""
        if self.outage is not None and self.get_state() != "busy":
            self.outage.give_up()
        super().request_stop(signum, frame)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """Second signal: abandon the current job now (it is requeued) and exit."""
        if self._shutdown_requested_date and now() - self._shutdown_requested_date < timedelta(
            seconds=1
        ):
            return  # the same signal delivered twice (e.g. to the process group)
        log.warning("worker %s: stopping now", self.name)
        self._forced = True
        if self.outage is not None:
            self.outage.give_up()  # stop now means now, also while Redis is away
        if self.get_state() == "busy":
            raise ForcedShutdown()
        raise SystemExit(1)

    def _finalize_failure(
        self, job: Job, queue: Queue, execution: Execution, exc_info: ExcInfo
    ) -> None:
        """A job that Redis came back without is dropped: RQ would write its status, result
        and registries back, resurrecting a job that nobody follows any more."""
        if exc_info[0] is not JobVanished:
            return super()._finalize_failure(job, queue, execution, exc_info)
        log.warning(
            "worker %s: job %s is gone from Redis (restarted without persistence); dropping it",
            self.name,
            job.id,
        )
        self.executions.pop(execution.id, None)

    def handle_exception(
        self, job: Job, *exc_info: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        """Log a job's exception; an interrupted job gets one line, not a traceback."""
        if exc_info and exc_info[0] is ForcedShutdown:
            log.warning("worker %s: job %s interrupted by a forced stop", self.name, job.id)
            return
        super().handle_exception(job, *exc_info)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        """A job interrupted by :meth:`request_force_stop` goes back to its queue instead of
        failing; then the worker exits."""
        if not getattr(self, "_forced", False):
            return super().handle_job_failure(
                job, queue, started_job_registry, exc_string=exc_string, execution=execution
            )
        assert self.proofroom_settings is not None
        job_id = job.id.removeprefix(f"{rq_prefix(self.proofroom_settings)}-")
        requeue(
            redis=self.connection,
            settings=self.proofroom_settings,
            job_id=job_id,
            spend_retry=False,
        )
        log.warning("worker %s: job %s handed back to %s", self.name, job_id, queue.name)
        raise SystemExit(1)


def worker_name(settings: Settings) -> str:
    """A unique name that carries the key prefix (RQ keys ``rq:worker:{name}``)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())
    return f"{rq_prefix(settings)}-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def make_worker(
    *,
    settings: Settings,
    redis: redis_lib.Redis,
    families: list[str] | None = None,
    name: str | None = None,
    worker_class: type[W] = ProofroomWorker,  # type: ignore[assignment]
    outage: Outage | None = None,
    pools: list[str] | None = None,
) -> W:
    """An RQ worker on the queues of the pools of ``families`` and ``pools`` (every pool of
    the catalog when neither is given; ``engine.pools.served_pools``), interactive first;
    ``outage`` is where its client (``engine.outage.patient_redis``) reports outages."""
    serves = served_pools(catalog=load_catalog(settings), families=families, pools=pools)
    worker = worker_class(
        queue_names(settings, serves),
        name=name or worker_name(settings),
        connection=redis,
        serializer=JSONSerializer,
        default_result_ttl=settings.result_ttl_s,
    )
    worker.proofroom_settings = settings
    worker.outage = outage
    return worker


def start_context(
    *,
    settings: Settings,
    redis: redis_lib.Redis,
    name: str,
    preload: bool = True,
    families: list[str] | None = None,
    outage: Outage | None = None,
    pools: list[str] | None = None,
) -> WorkerContext:
    """Set up what every job shares (warm cache, store, catalog), preload the default model
    when this worker serves its family, and install it all for ``engine.tasks.run_job``."""
    from engine.pipelines import PipelineCache  # torch
    from engine.reloads import CatalogReloads
    from engine.store import store_from_settings

    catalog = load_catalog(settings)
    cache = PipelineCache(settings=settings)
    counters = CallCounters()
    stats = WorkerStats(redis=redis, settings=settings, name=name, cache=cache, counters=counters)
    default = catalog.model(settings.default_model)
    serves = served_pools(catalog=catalog, families=families, pools=pools, warn=False)
    if preload and default.pool in serves:
        log.info("preloading %s", default.name)
        cache.acquire(default)
    context = WorkerContext(
        settings=settings,
        redis=redis,
        worker_name=name,
        cache=cache,
        store=store_from_settings(settings),
        catalog=catalog,
        queue=JobQueue(redis=redis, settings=settings, catalog=catalog),
        on_job_end=stats.job_ended,
        counters=counters,
        outage=outage or Outage(name=f"worker {name}", logger=log),
        reloads=CatalogReloads(
            redis=redis, settings=settings, catalog=catalog, load=lambda: load_catalog(settings)
        ),
    )
    stats.update()
    configure(context)
    return context


def stats_key(settings: Settings, worker_name: str) -> str:
    """The hash of a worker's counters (``jobs``, ``loads``, ``loads:<model>``, ``calls``,
    ``images``, ``merged``, ``busy_s``, ``compiles``, ``compile_s``)."""
    return f"{settings.key_prefix}:worker:{worker_name}:stats"


class WorkerStats:
    """The worker's counters in Redis, readable from other processes: jobs, model loads,
    and what its pipeline calls did (``engine.merging.CallCounters``)."""

    def __init__(
        self,
        *,
        redis: redis_lib.Redis,
        settings: Settings,
        name: str,
        cache: Any,
        counters: CallCounters,
    ):
        self.redis = redis
        self.cache = cache
        self.counters = counters
        self.key = stats_key(settings, name)
        self.ttl_s = max(settings.job_timeout_s * 2, 3600)

    def update(self, *, jobs_ended: int = 0) -> None:
        """Write the cache's load counters and the call counters (and count ``jobs_ended``
        more jobs), in one round trip."""
        loads = dict(self.cache.loads)
        fields: dict[Any, Any] = {f"loads:{m}": count for m, count in loads.items()}
        fields["loads"] = sum(loads.values())
        fields["pid"] = os.getpid()
        fields["calls"] = self.counters.calls
        fields["images"] = self.counters.images
        fields["merged"] = self.counters.merged
        fields["busy_s"] = round(self.counters.busy_s, 6)
        from engine.gpu import COMPILES  # torch: loaded with the cache already

        fields["compiles"] = COMPILES.count  # PROOFROOM_COMPILE_UNET, and what it cost
        fields["compile_s"] = round(COMPILES.seconds, 3)
        with self.redis.pipeline() as pipe:
            if jobs_ended:
                pipe.hincrby(self.key, "jobs", jobs_ended)
            pipe.hset(self.key, mapping=fields)
            pipe.expire(self.key, self.ttl_s)
            pipe.execute()

    def job_ended(self, count: int = 1) -> None:
        """Count ``count`` jobs (a group's) and refresh the other counters."""
        self.update(jobs_ended=count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``proofroom worker``."""
    parser.add_argument(
        "--family",
        action="append",
        choices=FAMILIES,
        dest="families",
        help="serve this model family's pool (repeatable; with neither this nor --pools: "
        "every pool)",
    )
    parser.add_argument(
        "--pools",
        action="append",
        type=_pool_list,
        metavar="POOL,POOL",
        help="serve these worker pools (`pool:` in models.yaml; a model without one is in "
        "its family's pool); adds to --family",
    )
    parser.add_argument("--name", help="worker name (default: prefix-host-pid-random)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    parser.add_argument(
        "--no-preload", action="store_true", help="do not preload the default model"
    )
    parser.add_argument(
        "--heartbeat-ttl",
        type=float,
        default=RecoveryConfig.heartbeat_ttl_s,
        help="seconds without a heartbeat before this worker counts as dead (default %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=RecoveryConfig.interval_s,
        help="seconds between heartbeats and checks for dead workers' jobs (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics (render seconds) on this port "
        "(default PROOFROOM_WORKER_METRICS_PORT; unset: off)",
    )


def _pool_list(text: str) -> list[str]:
    """``--pools sdxl,turbo``: the names, each checked (argparse reports the error)."""
    try:
        names = [check_pool_name(name.strip()) for name in text.split(",") if name.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not names:
        raise argparse.ArgumentTypeError("name at least one pool, e.g. --pools sdxl,turbo")
    return names


def _flat(lists: list[list[str]] | None) -> list[str] | None:
    """``--pools a,b --pools c`` -> ``[a, b, c]``; ``None`` when not given."""
    return [name for names in lists for name in names] if lists else None


def run(args: argparse.Namespace) -> int:
    """Run the worker until stopped; 0 on a clean stop."""
    settings = get_settings()
    if not settings.redis_url:
        print(
            "proofroom worker needs Redis: set REDIS_URL (e.g. redis://localhost:6379/0). "
            "Without Redis, `proofroom shell` renders in its own process.",
            file=sys.stderr,
        )
        return 2
    port = settings.worker_metrics_port if args.metrics_port is None else args.metrics_port
    try:
        metrics = MetricsServer(port=port) if port is not None else None
    except OSError as exc:
        print(f"cannot serve metrics on port {port} ({exc}); choose another", file=sys.stderr)
        return 2
    refused = login_refused(settings.redis_url)
    if refused is not None:  # not an outage to wait out: nothing changes until REDIS_URL does
        print(f"error: {refused}", file=sys.stderr)
        return 2
    name = args.name or worker_name(settings)
    outage = Outage(name=f"worker {name}", logger=log)
    redis = patient_redis(settings.redis_url, outage=outage)
    worker = make_worker(
        settings=settings,
        redis=redis,
        families=args.families,
        name=name,
        worker_class=ProofroomWorker,
        outage=outage,
        pools=_flat(args.pools),
    )
    config = RecoveryConfig(heartbeat_ttl_s=args.heartbeat_ttl, interval_s=args.heartbeat_interval)
    heartbeat = Heartbeat(
        redis=redis, settings=settings, worker_name=name, config=config, outage=outage
    )
    heartbeat.start()  # before the preload: a long model load must not look like a death
    try:
        context = start_context(
            settings=settings,
            redis=redis,
            name=name,
            preload=not args.no_preload,
            families=args.families,
            outage=outage,
            pools=_flat(args.pools),
        )
        log.info(
            "worker %s (pid %d) serving %s; warm: %s",
            worker.name,
            os.getpid(),
            ", ".join(worker.queue_names()),
            ", ".join(context.cache.loaded_models()) or "nothing yet",
        )
        worker.work(burst=args.burst, max_jobs=args.max_jobs, with_scheduler=False)
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)
    except CONNECTION_ERRORS:
        if not outage.gave_up:
            raise
        # Asked to stop while Redis was away: RQ could not say goodbye there (its keys expire).
        log.warning("worker %s: stopped while Redis was away", name)
        return 1 if getattr(worker, "_forced", False) else 0
    finally:
        heartbeat.stop()
        if metrics is not None:
            metrics.stop()
        configure(None)
        log.info("worker %s stopped", worker.name)


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.worker``: the same as ``proofroom worker``."""
    parser = argparse.ArgumentParser(prog="proofroom worker", description=__doc__)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)  # the same set-up as `proofroom worker`
    return run(args)


if __name__ == "__main__":
    # Run the canonical module, not this copy named __main__, so that classes and loggers
    # have one name (engine.worker) whichever way the worker was started.
    from engine.worker import main as _main

    sys.exit(_main())
