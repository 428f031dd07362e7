"""A worker renders queued jobs and reports them as events; real tiny renders.

Every test runs twice: against a real Redis with a ``python -m engine.worker`` subprocess, and on
the embedded default (in-memory server, worker thread). One worker per backend serves the whole
module, as a GPU worker serves a team: warm model, one job after another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import redis as redis_lib
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from engine.embedded import redis_for, start_embedded_worker
from engine.errors import internal_message
from engine.events import EventStream, JobEvent
from engine.queue import rq_job_id
from engine.recovery import RecoveryConfig
from engine.spec import ImageResult, JobResult
from engine.store import LocalStore
from tests.engine.jobs_fixtures import (
    REPO_ROOT,
    Backend,
    WorkerProcess,
    isolated_settings,
    new_prefix,
    slow_spec,
    tiny_spec,
    wait_for,
    wait_kind,
    wait_terminal,
    wipe,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["process", "embedded"])
def backend(request, redis_url, tmp_path_factory):
    prefix = new_prefix()
    data = tmp_path_factory.mktemp(f"worker-{request.param}")
    if request.param == "process":
        settings = isolated_settings(prefix=prefix, redis_url=redis_url, data_dir=data)
        client = redis_lib.Redis.from_url(redis_url)
        worker = WorkerProcess(settings, log_path=data / "worker.log")
        try:
            worker.wait_ready(client)
            yield Backend(kind="process", settings=settings, redis=client, worker=worker)
        finally:
            worker.stop()
            wipe(client, prefix)
    else:
        settings = isolated_settings(prefix=prefix, redis_url=None, data_dir=data)
        client = redis_for(settings)
        handle = start_embedded_worker(
            settings=settings,
            redis=client,
            recovery=RecoveryConfig(heartbeat_ttl_s=2, interval_s=0.5),
        )
        try:
            yield Backend(kind="embedded", settings=settings, redis=client, worker=handle)
        finally:
            handle.stop()
            wipe(client, prefix)


def _enqueue_without_torch(backend: Backend, spec) -> str:
    """Enqueue from a fresh process that asserts it never imported torch."""
    code = (
        "import sys, redis\n"
        "from engine.settings import Settings\n"
        "from engine.queue import JobQueue\n"
        "from engine.spec import JobSpec\n"
        "settings = Settings()\n"
        "queue = JobQueue(redis=redis.Redis.from_url(settings.redis_url), settings=settings)\n"
        "job_id = queue.enqueue(JobSpec.model_validate_json(sys.argv[1]))\n"
        "assert 'torch' not in sys.modules, 'the enqueuing process imported torch'\n"
        "print(job_id)\n"
    )
    env = {
        **os.environ,
        "REDIS_URL": backend.settings.redis_url,
        "PROOFROOM_KEY_PREFIX": backend.settings.key_prefix,
        "PROOFROOM_TEMPLATES_DIR": str(backend.settings.templates_dir),
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", code, spec.model_dump_json()],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_queued_job_is_rendered_and_its_events_arrive_in_order(backend: Backend) -> None:
    spec = tiny_spec(count=2, steps=3)
    if backend.kind == "process":
        job_id = _enqueue_without_torch(backend, spec)
    else:
        job_id = backend.queue.enqueue(spec)

    end = wait_terminal(backend.events, job_id)

    events = backend.events.history(job_id)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "done", kinds
    assert set(kinds[2:-1]) == {"progress"}
    steps = [(e.step, e.total) for e in events if e.kind == "progress"]
    assert steps == sorted(steps) and steps[-1] == (6, 6)  # the last step is always reported
    assert all(e.origin == spec.origin for e in events)
    assert end.result is not None and len(end.result.images) == 2
    store = LocalStore(backend.settings.artifacts_dir)
    for image in end.result.images:
        assert store.path(image.artifact_id).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert backend.queue.status(job_id) == "done"


def test_ten_jobs_load_the_model_once(backend: Backend) -> None:
    jobs_before = backend.stats().get("jobs", 0)

    job_ids = [backend.queue.enqueue(tiny_spec(steps=1, seed=s)) for s in range(10)]
    ends = [wait_terminal(backend.events, job_id) for job_id in job_ids]

    assert [e.kind for e in ends] == ["done"] * 10
    assert [e.result.load_s for e in ends] == [0.0] * 10  # preloaded at start: always warm
    stats = wait_for(lambda: (s := backend.stats()).get("jobs", 0) >= jobs_before + 10 and s)
    assert stats["loads:tiny"] == 1 and stats["loads"] == 1


def test_an_interactive_job_goes_before_a_long_bulk_queue(backend: Backend) -> None:
    busy = backend.queue.enqueue(slow_spec(priority="bulk"))
    wait_kind(backend.events, busy, "progress")
    bulk = [backend.queue.enqueue(tiny_spec(priority="bulk", steps=1)) for _ in range(5)]
    urgent = backend.queue.enqueue(tiny_spec(priority="interactive", steps=1))
    assert backend.queue.events.history(urgent)[0].position == 1

    assert backend.queue.cancel(busy)  # running: stops at its next step
    for job_id in [urgent, *bulk]:
        wait_terminal(backend.events, job_id)

    started = [e.job_id for e in backend.events.history() if e.kind == "started"]
    order = [job_id for job_id in started if job_id in {busy, urgent, *bulk}]
    assert order == [busy, urgent, *bulk]
    assert wait_terminal(backend.events, busy).kind == "cancelled"


def test_cancel_a_running_job(backend: Backend) -> None:
    job_id = backend.queue.enqueue(slow_spec())
    wait_kind(backend.events, job_id, "progress")
    assert backend.queue.status(job_id) == "started"

    assert backend.queue.cancel(job_id) is True

    end = wait_terminal(backend.events, job_id, timeout=20)
    assert end.kind == "cancelled" and end.message
    assert backend.queue.status(job_id) == "cancelled"
    assert backend.queue.cancel(job_id) is False
    progress = [e.step for e in backend.events.history(job_id) if e.kind == "progress"]
    assert progress[-1] < 60 * 8  # it stopped before the end
    # The worker goes on serving.
    assert wait_terminal(backend.events, backend.queue.enqueue(tiny_spec(steps=1))).kind == "done"


def test_cancel_a_queued_job_while_the_worker_is_busy(backend: Backend) -> None:
    busy = backend.queue.enqueue(slow_spec())
    wait_kind(backend.events, busy, "started")
    waiting = backend.queue.enqueue(tiny_spec())

    assert backend.queue.cancel(waiting) is True
    assert [e.kind for e in backend.events.history(waiting)] == ["queued", "cancelled"]
    backend.queue.cancel(busy)
    assert wait_terminal(backend.events, busy).kind == "cancelled"
    assert "started" not in [e.kind for e in backend.events.history(waiting)]


def test_a_user_error_is_reported_as_its_sentence_and_not_retried(backend: Backend) -> None:
    job_id = backend.queue.enqueue(tiny_spec(width=100))  # the worker checks limits again

    end = wait_terminal(backend.events, job_id)

    assert end.kind == "failed" and end.error_kind == "invalid_spec"
    assert "multiple of 8" in end.message
    assert [e.kind for e in backend.events.history(job_id)].count("started") == 1


def test_a_model_not_downloaded_fails_once_with_how_to_get_it(backend: Backend) -> None:
    # sd15 is not cached here and the Hub is offline: the same on every attempt, so one
    # attempt, its sentence, and one log line instead of a traceback.
    tracebacks = _log_text(backend).count("Traceback")
    job_id = backend.queue.enqueue(tiny_spec(model="sd15", width=64, height=64))

    end = wait_terminal(backend.events, job_id)

    assert end.kind == "failed" and end.error_kind == "model_unavailable"
    assert end.message.startswith("model `sd15` is not downloaded on this worker")
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in end.message
    assert [e.kind for e in backend.events.history(job_id)].count("started") == 1
    if backend.kind == "process":
        log = _log_text(backend)
        assert log.count("Traceback") == tracebacks
        lines = [line for line in log.splitlines() if job_id in line and "sd15" in line]
        assert len([line for line in lines if "model_unavailable" in line]) == 1, lines


def test_a_blank_image_is_not_delivered_and_not_retried(backend: Backend) -> None:
    # A prompt weight beyond fp32 makes the tiny model's output NaN (a black PNG if kept).
    prompt = "a (red:1" + "0" * 39 + ") mug on a table"
    job_id = backend.queue.enqueue(tiny_spec(prompt=prompt))

    end = wait_terminal(backend.events, job_id)

    assert end.kind == "failed" and end.error_kind == "blank_image"
    assert end.message.startswith("the image came out blank")
    assert [e.kind for e in backend.events.history(job_id)].count("started") == 1


def _log_text(backend: Backend) -> str:
    if backend.kind != "process":
        return ""
    return backend.worker.log_tail(lines=1_000_000)  # the whole log, flushed


def test_an_internal_error_is_retried_then_reported_without_details(backend: Backend) -> None:
    # A LoRA file that is there but corrupt: ours to fix, not the user's.
    corrupt = backend.settings.lora_dir / "brand-x.safetensors"  # a catalog LoRA for SDXL
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"not a safetensors file")
    try:
        job_id = backend.queue.enqueue(
            tiny_spec(model="tiny-xl", loras=[{"name": "brand-x", "weight": 0.8}])
        )
        end = wait_terminal(backend.events, job_id)
    finally:
        corrupt.unlink()

    assert end.kind == "failed" and end.error_kind == "internal"
    assert end.message == internal_message(job_id)
    kinds = [e.kind for e in backend.events.history(job_id)]
    assert kinds.count("started") == 2 and kinds.count("failed") == 1  # one retry
    job = Job.fetch(
        rq_job_id(backend.settings, job_id), connection=backend.redis, serializer=JSONSerializer
    )
    wait_for(lambda: job.get_status() == JobStatus.FAILED, what="RQ to record the failure")


def test_a_job_that_already_ended_is_not_rendered_again(backend: Backend) -> None:
    # What a retry finds when its first attempt published `done` and then lost its worker.
    spec = tiny_spec()
    image = ImageResult(
        index=0, seed=7, artifact_id="20250101-0123456789abcdef.png", width=64, height=64
    )
    result = JobResult(job_id=spec.id, model="tiny", images=[image])
    backend.events.publish_terminal(JobEvent(job_id=spec.id, kind="done", result=result))
    backend.queue.enqueue(spec)
    job = Job.fetch(
        rq_job_id(backend.settings, spec.id), connection=backend.redis, serializer=JSONSerializer
    )

    wait_for(lambda: job.get_status() == JobStatus.FINISHED, what="the duplicate to be skipped")

    assert [e.kind for e in backend.events.history(spec.id)] == ["done", "queued"]


def test_a_consumer_stopped_mid_job_gets_done_after_restart_and_only_once(backend: Backend) -> None:
    group, consumer = f"bot-{uuid.uuid4().hex[:6]}", "bot-1"
    before = EventStream(redis=backend.redis, settings=backend.settings)
    before.ensure_group(group, start="$")  # only this test's events
    job_id = backend.queue.enqueue(slow_spec(count=1, steps=30))
    seen = [e for _, e in before.read(group=group, consumer=consumer, block_ms=2000)]
    assert seen and seen[0].job_id == job_id and not any(e.terminal for e in seen)
    # ... the bot stops here, without acknowledging, and the job finishes while it is down.
    wait_terminal(backend.events, job_id)

    after = EventStream(redis=backend.redis, settings=backend.settings)
    received: list[tuple[str, JobEvent]] = []
    while batch := after.read(group=group, consumer=consumer, block_ms=100):
        received += batch
    kinds = [e.kind for _, e in received if e.job_id == job_id]
    assert kinds[0] == "queued" and kinds.count("done") == 1  # replayed, then the rest
    for entry_id, _ in received:
        after.ack(group=group, entry_id=entry_id)

    again = EventStream(redis=backend.redis, settings=backend.settings)
    assert again.read(group=group, consumer=consumer, block_ms=100) == []


def test_stats_are_readable_from_outside(backend: Backend) -> None:
    stats = backend.stats()
    assert stats["pid"] == (backend.worker.proc.pid if backend.kind == "process" else os.getpid())
    assert json.dumps(stats)  # plain integers
