"""Routing by model: two ``proofroom worker`` processes serving different pools each render only
their pool's jobs, merge only their own, and say in their heartbeats what they serve. A real
Redis, real worker subprocesses, real tiny renders; the catalog (``tiny`` in pool ``sd15``,
``tiny-turbo`` in pool ``turbo``) is built in the test's folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from rq.job import Job
from rq.serializers import JSONSerializer

from engine.catalog import Catalog
from engine.pools import PoolDirectory
from engine.queue import JobQueue, rq_job_id
from engine.settings import Settings
from tests.engine.jobs_fixtures import WorkerProcess, tiny_spec, wait_for, wait_terminal
from tests.engine.pool_fixtures import with_pools

pytestmark = pytest.mark.slow


@pytest.fixture()
def pooled(settings: Settings, tmp_path: Path) -> Settings:
    return with_pools(settings, tmp_path / "templates")


@pytest.fixture()
def workers(pooled: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def _start(pooled: Settings, tmp_path: Path, label: str, args: list[str]) -> WorkerProcess:
    return WorkerProcess(pooled, log_path=tmp_path / f"{label}.log", args=args)


def test_two_workers_serving_different_pools_each_receive_only_their_jobs(
    pooled: Settings, redis: redis_lib.Redis, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    queue = JobQueue(redis=redis, settings=pooled, catalog=Catalog.load(pooled.templates_dir))
    # Queued before the workers start, so each finds all of its pool's jobs waiting: the
    # turbo worker merges its three compatible jobs and must not take the sd15 ones along.
    turbo = [queue.enqueue(tiny_spec(model="tiny-turbo", seed=s)) for s in (1, 2, 3)]
    sd15 = [queue.enqueue(tiny_spec(model="tiny", seed=s)) for s in (4, 5)]
    sd15.append(queue.enqueue(tiny_spec(model="tiny", seed=6, priority="bulk")))

    workers.append(_start(pooled, tmp_path, "turbo", ["--pools", "turbo"]))
    workers.append(_start(pooled, tmp_path, "sd15", ["--family", "sd15"]))
    turbo_worker, sd15_worker = workers
    for worker in workers:
        worker.wait_ready(redis, timeout=120)

    logs = lambda: "\n".join(w.log_tail() for w in workers)  # noqa: E731
    for job_id in turbo + sd15:
        end = wait_terminal(queue.events, job_id, timeout=120)
        assert end.kind == "done", f"{end}\n{logs()}"

    def rendered_by(job_id: str) -> str:
        job = Job.fetch(rq_job_id(pooled, job_id), connection=redis, serializer=JSONSerializer)
        return job.worker_name or ""

    assert {rendered_by(job_id) for job_id in turbo} == {turbo_worker.name}, logs()
    assert {rendered_by(job_id) for job_id in sd15} == {sd15_worker.name}, logs()
    turbo_stats = wait_for(lambda: (s := turbo_worker.stats(redis)).get("jobs") == 3 and s)
    assert (turbo_stats["calls"], turbo_stats["merged"]) == (1, 2)
    assert wait_for(lambda: sd15_worker.stats(redis).get("jobs") == 3)
    # The turbo worker was never asked to preload the default model (sd15's pool).
    assert "loads:tiny" not in turbo_stats and turbo_stats["loads:tiny-turbo"] == 1

    # Their heartbeats say who serves what, for the bot and the operators.
    directory = PoolDirectory(redis=redis, settings=pooled)
    served = {record.name: record.pools for record in directory.workers()}
    assert served == {turbo_worker.name: ("turbo",), sd15_worker.name: ("sd15",)}
    assert directory.live_pools() == {"turbo", "sd15"}

    # A clean stop: the pool is no longer live, but it was served a moment ago.
    turbo_worker.stop()
    assert wait_for(lambda: directory.live_pools() == {"sd15"})
    assert directory.status("turbo").seen_within(60)
