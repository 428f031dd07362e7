"""The embedded default: no Redis server, the worker in a thread of the same process.

The shared behaviour (render, events, cancel, priority, consumer restarts) is covered by
``test_worker.py``, which runs every test on this backend too; here is what only it has.
"""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis as redis_lib
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from engine import tasks
from engine.embedded import redis_for, start_embedded_worker, worker_if_needed
from engine.events import EventStream
from engine.queue import JobQueue, rq_job_id
from engine.recovery import RecoveryConfig, alive_key
from engine.settings import Settings
from tests.engine.jobs_fixtures import (
    isolated_settings,
    new_prefix,
    slow_spec,
    tiny_spec,
    wait_for,
    wait_terminal,
    wipe,
)

FAST = RecoveryConfig(heartbeat_ttl_s=2, interval_s=0.5)


@pytest.fixture()
def embedded_settings(tmp_path):
    settings = isolated_settings(prefix=new_prefix(), redis_url=None, data_dir=tmp_path)
    yield settings
    wipe(redis_for(settings), settings.key_prefix)


def test_without_a_url_every_caller_shares_one_in_memory_server() -> None:
    settings = Settings(redis_url=None)
    first, second = redis_for(settings), redis_for(settings)

    assert isinstance(first, fakeredis.FakeRedis) and first is second


def test_with_a_url_the_client_is_real(redis_url: str) -> None:
    client = redis_for(Settings(redis_url=redis_url))

    assert not isinstance(client, fakeredis.FakeRedis)
    assert isinstance(client, redis_lib.Redis) and client.ping()


def test_the_worker_thread_stops_promptly_and_cleans_up(embedded_settings: Settings) -> None:
    client = redis_for(embedded_settings)
    handle = start_embedded_worker(
        settings=embedded_settings, redis=client, preload=False, recovery=FAST
    )
    assert handle.thread.is_alive()
    assert client.exists(f"rq:worker:{handle.name}")
    context = tasks.current_context()
    assert context.events is context.queue.events  # one event stream per worker

    started = time.monotonic()
    handle.stop()

    assert time.monotonic() - started < 5
    assert not handle.thread.is_alive()
    assert client.hexists(f"rq:worker:{handle.name}", "death")
    assert not client.exists(alive_key(embedded_settings, handle.name))
    assert tasks._context is None


def test_the_runners_start_a_worker_only_where_needed(embedded_settings, redis_url) -> None:
    alone = redis_for(embedded_settings)
    with worker_if_needed(settings=embedded_settings, redis=alone) as worker:
        assert worker is not None and worker.thread.is_alive()  # no REDIS_URL: nobody else
    assert not worker.thread.is_alive()

    served = embedded_settings.model_copy(update={"redis_url": redis_url})
    real = redis_lib.Redis.from_url(redis_url)
    with worker_if_needed(settings=served, redis=real) as none:
        assert none is None  # `proofroom worker` processes render for a real Redis
    try:
        with worker_if_needed(settings=served, redis=real, wanted=True) as asked:
            assert asked is not None and asked.thread.is_alive()  # --embedded-worker
        assert not asked.thread.is_alive()
    finally:
        wipe(real, served.key_prefix)


def test_a_worker_that_cannot_start_leaves_no_heartbeat(embedded_settings: Settings) -> None:
    client = redis_for(embedded_settings)
    broken = embedded_settings.model_copy(update={"default_model": "no-such-model"})
    with pytest.raises(Exception, match="no-such-model"):
        start_embedded_worker(settings=broken, redis=client, recovery=FAST)
    time.sleep(FAST.interval_s * 2)  # a heartbeat left running would have beaten again
    assert not list(client.scan_iter(alive_key(broken, "*")))


@pytest.mark.slow
def test_job_timeouts_work_in_a_thread(embedded_settings: Settings) -> None:
    # SIGALRM reaches only the main thread; the thread worker uses RQ's timer instead.
    settings = embedded_settings.model_copy(update={"job_timeout_s": 1})
    client = redis_for(settings)
    handle = start_embedded_worker(settings=settings, redis=client, recovery=FAST)
    try:
        queue, events = (
            JobQueue(redis=client, settings=settings),
            EventStream(redis=client, settings=settings),
        )
        job_id = queue.enqueue(slow_spec())

        end = wait_terminal(events, job_id, timeout=30)

        assert end.kind == "failed" and end.error_kind == "timeout"
        assert "longer than 1 s" in end.message
        job = Job.fetch(rq_job_id(settings, job_id), connection=client, serializer=JSONSerializer)
        wait_for(lambda: job.get_status() == JobStatus.FAILED, what="RQ to fail the job")
        assert [e.kind for e in events.history(job_id)].count("started") == 1  # not retried
    finally:
        handle.stop()


@pytest.mark.slow
def test_a_family_worker_serves_only_its_familys_queues(embedded_settings: Settings) -> None:
    client = redis_for(embedded_settings)
    handle = start_embedded_worker(
        settings=embedded_settings, redis=client, families=["sdxl"], recovery=FAST
    )
    try:
        queue = JobQueue(redis=client, settings=embedded_settings)
        events = EventStream(redis=client, settings=embedded_settings)
        sd15 = queue.enqueue(tiny_spec())
        xl = queue.enqueue(tiny_spec(model="tiny-xl"))

        assert wait_terminal(events, xl, timeout=60).kind == "done"
        assert queue.status(sd15) == "queued" and queue.position(sd15) == 1
        # The default model (sd15 family) was not preloaded on an sdxl-only worker.
        stats = client.hgetall(f"{embedded_settings.key_prefix}:worker:{handle.name}:stats")
        assert stats[b"loads:tiny-xl"] == b"1" and b"loads:tiny" not in stats
    finally:
        handle.stop()


@pytest.mark.slow
def test_without_preload_only_the_first_job_pays_the_load(embedded_settings: Settings) -> None:
    client = redis_for(embedded_settings)
    handle = start_embedded_worker(
        settings=embedded_settings, redis=client, preload=False, recovery=FAST
    )
    try:
        queue = JobQueue(redis=client, settings=embedded_settings)
        events = EventStream(redis=client, settings=embedded_settings)
        first, second = (queue.enqueue(tiny_spec(steps=1, seed=s)) for s in (1, 2))

        loads = [wait_terminal(events, job_id).result.load_s for job_id in (first, second)]

        assert loads[0] > 0 and loads[1] == 0
        stats = client.hgetall(f"{embedded_settings.key_prefix}:worker:{handle.name}:stats")
        assert stats[b"loads:tiny"] == b"1"
    finally:
        handle.stop()
