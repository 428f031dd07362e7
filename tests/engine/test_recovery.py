"""A job whose worker died is noticed in seconds and retried once; its user sees one result.
Workers stop cleanly on SIGTERM, and at once (handing the job back) on a second one."""

from __future__ import annotations

import signal
import time

import pytest
from rq import SimpleWorker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from engine.events import EventStream
from engine.queue import JobQueue, queue_names, rq_job_id, rq_prefix
from engine.recovery import LOST_MESSAGE, Heartbeat, RecoveryConfig, alive_key, recover_abandoned
from engine.tasks import running_key
from tests.engine.jobs_fixtures import (
    WorkerProcess,
    settings_and_redis,
    slow_spec,
    tiny_spec,
    wait_kind,
    wait_terminal,
    wipe,
)
from tests.waiting import wait_for


@pytest.fixture(params=["redis", "fakeredis"])
def queue(request, tmp_path, key_prefix):
    settings, client = settings_and_redis(request, tmp_path=tmp_path, prefix=key_prefix)
    yield JobQueue(redis=client, settings=settings)
    wipe(client, key_prefix)


def _start_on_ghost_worker(queue: JobQueue, name: str) -> Job:
    """Do what a worker does up to rendering (dequeue, execution, running entry), then 'die'."""
    ghost = SimpleWorker(
        queue_names(queue.settings), name=name, connection=queue.redis, serializer=JSONSerializer
    )
    ghost.register_birth()
    job, _ = ghost.dequeue_job_and_maintain_ttl(None)
    ghost.prepare_execution(job)
    ghost.prepare_job_execution(job)
    queue.redis.hset(
        running_key(queue.settings),
        job.id.removeprefix(rq_prefix(queue.settings) + "-"),
        ghost.name,
    )
    return job


def test_a_dead_workers_job_goes_back_to_the_front_once_then_fails(queue: JobQueue) -> None:
    prefix = queue.settings.key_prefix
    first = queue.enqueue(tiny_spec())
    second = queue.enqueue(tiny_spec())
    _start_on_ghost_worker(queue, f"{prefix}-ghost")

    assert recover_abandoned(redis=queue.redis, settings=queue.settings) == [first]

    job = Job.fetch(
        rq_job_id(queue.settings, first), connection=queue.redis, serializer=JSONSerializer
    )
    assert job.get_status() == JobStatus.QUEUED and job.retries_left == 0
    assert queue.position(first) == 1 and queue.position(second) == 2  # front of the line
    assert not queue.redis.exists(f"rq:worker:{prefix}-ghost")  # registration dropped
    assert not queue.redis.hgetall(running_key(queue.settings))
    assert recover_abandoned(redis=queue.redis, settings=queue.settings) == []

    # It dies again: no retry left, so the user gets a sentence instead of silence.
    _start_on_ghost_worker(queue, f"{prefix}-ghost2")
    assert recover_abandoned(redis=queue.redis, settings=queue.settings) == [first]
    end = queue.events.history(first)[-1]
    assert end.kind == "failed" and end.error_kind == "lost"
    assert end.message == LOST_MESSAGE.format(job_id=first)
    assert end.origin == {"platform": "test", "channel": "C1"}
    assert queue.status(first) == "failed"


def test_a_live_workers_job_is_left_alone(queue: JobQueue) -> None:
    job_id = queue.enqueue(tiny_spec())
    name = f"{queue.settings.key_prefix}-alive"
    heartbeat = Heartbeat(
        redis=queue.redis,
        settings=queue.settings,
        worker_name=name,
        config=RecoveryConfig(heartbeat_ttl_s=2, interval_s=0.5),
    )
    heartbeat.start()
    try:
        _start_on_ghost_worker(queue, name)
        time.sleep(1.2)  # a few beats
        assert recover_abandoned(redis=queue.redis, settings=queue.settings) == []
        assert queue.status(job_id) == "started"
    finally:
        heartbeat.stop()
    assert not queue.redis.exists(alive_key(queue.settings, name))


def test_intervals_must_leave_room_for_a_missed_beat() -> None:
    with pytest.raises(ValueError, match="at least twice"):
        RecoveryConfig(heartbeat_ttl_s=1, interval_s=1)


@pytest.fixture()
def real(settings, redis, tmp_path):
    """Settings on the real Redis for worker subprocesses."""
    yield settings, redis, tmp_path
    wipe(redis, settings.key_prefix)


def _worker(settings, tmp_path, label: str) -> WorkerProcess:
    return WorkerProcess(settings, log_path=tmp_path / f"{label}.log")


@pytest.mark.slow
def test_kill_9_mid_job_then_a_new_worker_completes_it_once(real) -> None:
    settings, redis, tmp_path = real
    queue, events = (
        JobQueue(redis=redis, settings=settings),
        EventStream(redis=redis, settings=settings),
    )
    first = _worker(settings, tmp_path, "first")
    second = None
    try:
        first.wait_ready(redis)
        job_id = queue.enqueue(tiny_spec(steps=20))
        wait_kind(events, job_id, "progress")
        first.signal(signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()

        second = _worker(settings, tmp_path, "second")
        end = wait_terminal(events, job_id, timeout=90)

        assert end.kind == "done", first.log_tail() + second.log_tail()
        assert time.monotonic() - killed_at < 60
        time.sleep(1.0)  # let any stray second result surface
        kinds = [e.kind for e in events.history(job_id)]
        assert kinds.count("done") == 1 and kinds.count("started") == 2
        assert not redis.exists(f"rq:worker:{first.name}")
        # The end is published before the worker counts the job.
        assert wait_for(lambda: second.stats(redis).get("jobs") == 1)

        # The same worker stops cleanly on SIGTERM, after the job it is rendering.
        last = queue.enqueue(tiny_spec(steps=20))
        wait_kind(events, last, "progress")
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, second.log_tail()
        assert [e.kind for e in events.history(last)][-1] == "done"
        assert not redis.exists(alive_key(settings, second.name))
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_and_hands_the_job_back(real) -> None:
    settings, redis, tmp_path = real
    queue, events = (
        JobQueue(redis=redis, settings=settings),
        EventStream(redis=redis, settings=settings),
    )
    worker = _worker(settings, tmp_path, "forced")
    try:
        worker.wait_ready(redis)
        job_id = queue.enqueue(slow_spec())
        wait_kind(events, job_id, "progress")

        worker.signal(signal.SIGTERM)
        time.sleep(1.5)  # RQ ignores a repeat within 1 s (one signal sent to a process group)
        assert worker.proc.poll() is None  # still rendering
        worker.signal(signal.SIGTERM)

        assert worker.wait(timeout=15) == 1, worker.log_tail()
        assert queue.status(job_id) == "queued" and queue.position(job_id) == 1
        job = Job.fetch(rq_job_id(settings, job_id), connection=redis, serializer=JSONSerializer)
        assert job.retries_left == settings.job_retries  # a stop is not a crash
        assert not any(e.terminal for e in events.history(job_id))
        assert queue.cancel(job_id)
        assert [e.kind for e in events.history(job_id)][-1] == "cancelled"
    finally:
        worker.stop()
