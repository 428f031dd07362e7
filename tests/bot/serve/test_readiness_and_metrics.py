"""What ``/readyz`` and ``/metrics`` read, each from the real writer of the state, served by the
real service in a thread (uvicorn on 127.0.0.1) over the real Redis: a worker's heartbeat
and the pools it serves, queued jobs, each job's one terminal event, review decisions, the
job-event stream's consumer groups; and a Redis that does not answer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis as redis_lib

from bot.ports import MessageRef
from bot.serve.service import HttpService
from bot.serve.state import ServeState
from bot.state import BotState
from engine.events import EventStream, JobEvent
from engine.queue import JobQueue, queue_name
from engine.recovery import Heartbeat, RecoveryConfig
from engine.settings import Settings
from engine.worker import make_worker
from tests.bot.serve.conftest import get, samples
from tests.engine.jobs_fixtures import isolated_settings, tiny_spec


@pytest.fixture()
def service(settings: Settings, redis: redis_lib.Redis) -> Iterator[HttpService]:
    served = HttpService(
        settings=settings,
        redis=redis,
        host="127.0.0.1",
        port=0,
        known_pools=lambda: {"sd15", "sdxl"},
    ).start()
    yield served
    served.close()


def test_ready_once_a_worker_beats_and_the_pools_it_does_not_serve_are_named(
    service: HttpService, settings: Settings, redis: redis_lib.Redis
) -> None:
    JobQueue(redis=redis, settings=settings).enqueue(tiny_spec())  # tiny: pool sd15
    worker = make_worker(settings=settings, redis=redis, families=["sdxl"])
    worker.register_birth()
    heartbeat = Heartbeat(
        redis=redis,
        settings=settings,
        worker_name=worker.name,
        config=RecoveryConfig(heartbeat_ttl_s=2, interval_s=0.5),
    )
    heartbeat.start()
    try:
        ready = get(service.url + "/readyz")
        assert ready.status == 200, ready.body
        assert ready.json()["live_workers"] == [worker.name]
        assert ready.json()["workers_by_pool"] == {"sd15": 0, "sdxl": 1}
        assert ready.json()["pools_without_worker"] == ["sd15"]
        metrics = samples(get(service.url + "/metrics").body)
        assert metrics[("proofroom_workers_live", ())] == 1
        assert metrics[("proofroom_pool_workers_live", (("pool", "sdxl"),))] == 1
        assert metrics[("proofroom_pool_workers_live", (("pool", "sd15"),))] == 0
        # The queues of a pool a worker serves are reported before their first job.
        depth = {
            dict(labels)["queue"]: value
            for (name, labels), value in metrics.items()
            if name == "proofroom_queue_depth"
        }
        assert depth == {
            queue_name(settings, "interactive", "sd15"): 1,
            queue_name(settings, "interactive", "sdxl"): 0,
            queue_name(settings, "bulk", "sdxl"): 0,
        }
    finally:
        heartbeat.stop()
        worker.register_death()
    stopped = get(service.url + "/readyz")
    assert stopped.status == 503
    assert stopped.json()["live_workers"] == []
    assert stopped.json()["pools_without_worker"] == ["sd15", "sdxl"]


def test_metrics_count_each_job_once_by_outcome_and_each_review_decision(
    service: HttpService, settings: Settings, redis: redis_lib.Redis
) -> None:
    events = EventStream(redis=redis, settings=settings)
    for job_id, kind in [("a", "done"), ("b", "done"), ("c", "failed"), ("d", "cancelled")]:
        events.publish_terminal(JobEvent(job_id=job_id, kind=kind))
    assert events.publish_terminal(JobEvent(job_id="a", kind="failed")) is None  # ended once
    state = BotState(redis=redis, key_prefix=settings.key_prefix, ttl_s=60)
    for k, decision in enumerate(["approved", "approved", "rejected", "pending"]):
        state.set_image_field(_message(k), "state", decision)
    state.set_image_field(_message(9), "export", "[]")  # not a decision

    metrics = samples(get(service.url + "/metrics").body)
    assert {
        outcome: metrics[("proofroom_jobs_total", (("outcome", outcome),))]
        for outcome in ("done", "failed", "cancelled")
    } == {"done": 2, "failed": 1, "cancelled": 1}
    assert {
        decision: metrics[("proofroom_images_reviewed_total", (("decision", decision),))]
        for decision in ("approved", "rejected")
    } == {"approved": 2, "rejected": 1}


def test_event_stream_lag_and_pending_per_consumer_group(
    service: HttpService, settings: Settings, redis: redis_lib.Redis
) -> None:
    events = EventStream(redis=redis, settings=settings)
    events.ensure_group("bot-slack")
    events.ensure_group("bot-discord")
    for step in range(5):
        events.publish(JobEvent(job_id="j", kind="progress", step=step, total=5))
    read = events.read(group="bot-slack", consumer="main", count=2, block_ms=10)
    events.ack(group="bot-slack", entry_id=read[0][0])  # one handled, one still in hand

    metrics = samples(get(service.url + "/metrics").body)
    assert metrics[("proofroom_event_stream_lag", (("group", "bot-slack"),))] == 3
    assert metrics[("proofroom_event_stream_pending", (("group", "bot-slack"),))] == 1
    assert metrics[("proofroom_event_stream_lag", (("group", "bot-discord"),))] == 5
    assert metrics[("proofroom_event_stream_pending", (("group", "bot-discord"),))] == 0


def test_queues_of_other_prefixes_are_not_counted(
    service: HttpService, settings: Settings, redis: redis_lib.Redis, redis_url: str, tmp_path
) -> None:
    # A prefix that starts like this one's: its queues start with ours too.
    other = isolated_settings(
        prefix=settings.key_prefix + "-staging", redis_url=redis_url, data_dir=tmp_path / "o"
    )
    JobQueue(redis=redis, settings=other).enqueue(tiny_spec())
    state = ServeState(redis=redis, settings=settings)
    assert state.pool_of(queue_name(other, "interactive", "sd15")) is None
    assert state.pool_of(queue_name(settings, "interactive", "sd15")) == "sd15"
    metrics = samples(get(service.url + "/metrics").body)
    assert not [key for key in metrics if key[0] == "proofroom_queue_depth"]


def test_a_redis_that_does_not_answer_is_named_and_health_stays_up(settings: Settings) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    gone = redis_lib.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    served = HttpService(
        settings=settings, redis=gone, host="127.0.0.1", port=0, known_pools=frozenset
    ).start()
    try:
        assert get(served.url + "/healthz").status == 200
        ready = get(served.url + "/readyz")
        assert ready.status == 503
        assert ready.json()["redis"].startswith("unreachable")
        assert "Redis does not answer" in ready.json()["missing"][0]
        metrics = samples(get(served.url + "/metrics").body)
        assert metrics == {("proofroom_redis_up", ()): 0}
    finally:
        served.close()


def _message(k: int) -> MessageRef:
    """An image's message in a Slack thread."""
    return MessageRef(platform="slack", channel="C1", id=f"1700.{k}", thread="1700.0")
