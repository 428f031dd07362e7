"""The enqueue side without a worker: RQ job shape, queues by priority and family, place in
line, cancel of queued jobs, a user's jobs. Runs on the real Redis and the embedded server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from engine.queue import JobQueue, fetch_job, job_spec, queue_name, queue_names, rq_job_id
from engine.settings import Settings
from tests.engine.jobs_fixtures import REPO_ROOT, settings_and_redis, tiny_spec, wipe


@pytest.fixture(params=["redis", "fakeredis"])
def queue(request, tmp_path, key_prefix):
    settings, client = settings_and_redis(request, tmp_path=tmp_path, prefix=key_prefix)
    yield JobQueue(redis=client, settings=settings)
    wipe(client, key_prefix)


def test_the_rq_job_carries_the_spec_as_json_with_settings(queue: JobQueue) -> None:
    spec = tiny_spec()
    assert queue.enqueue(spec) == spec.id

    job = Job.fetch(
        rq_job_id(queue.settings, spec.id), connection=queue.redis, serializer=JSONSerializer
    )
    assert job.func_name == "engine.tasks.run_job"
    assert list(job.args) == [spec.model_dump(mode="json")]
    assert job.timeout == queue.settings.job_timeout_s
    assert job.result_ttl == queue.settings.result_ttl_s
    assert job.retries_left == queue.settings.job_retries
    assert job.origin == queue_name(queue.settings, "interactive", "sd15")
    assert queue.spec(spec.id) == spec
    assert queue.status(spec.id) == "queued"


def test_one_helper_turns_an_rq_job_into_its_spec(queue: JobQueue) -> None:
    spec = tiny_spec()
    queue.enqueue(spec)
    job = fetch_job(redis=queue.redis, settings=queue.settings, job_id=spec.id)
    assert job is not None and job_spec(job=job) == spec
    assert fetch_job(redis=queue.redis, settings=queue.settings, job_id="no-such-job") is None
    # A job queued by another version (or corrupt): no spec, and no exception for the caller.
    job.args = ({"prompt": 3},)
    job.save()
    assert job_spec(job=job) is None and queue.spec(spec.id) is None


def test_queues_are_per_priority_and_family_interactive_first(queue: JobQueue) -> None:
    settings = queue.settings
    prefix = settings.key_prefix
    assert queue_names(settings) == [
        f"{prefix}-interactive-sd15",
        f"{prefix}-interactive-sd2",
        f"{prefix}-interactive-sdxl",
        f"{prefix}-bulk-sd15",
        f"{prefix}-bulk-sd2",
        f"{prefix}-bulk-sdxl",
    ]
    assert queue_names(settings, ["sdxl"]) == [f"{prefix}-interactive-sdxl", f"{prefix}-bulk-sdxl"]
    # A family is a pool (the pool of its models that name none); any pool name is a queue.
    assert queue_names(settings, ["turbo", "sd15"]) == [
        f"{prefix}-interactive-turbo",
        f"{prefix}-interactive-sd15",
        f"{prefix}-bulk-turbo",
        f"{prefix}-bulk-sd15",
    ]
    with pytest.raises(ValueError, match="not valid"):
        queue_names(settings, ["Turbo XL"])

    xl = tiny_spec(model="tiny-xl", priority="bulk")
    queue.enqueue(xl)
    job = Job.fetch(rq_job_id(settings, xl.id), connection=queue.redis, serializer=JSONSerializer)
    assert job.origin == f"{prefix}-bulk-sdxl"


def test_place_in_line_counts_interactive_before_bulk(queue: JobQueue) -> None:
    bulk = [queue.enqueue(tiny_spec(priority="bulk")) for _ in range(3)]
    urgent = queue.enqueue(tiny_spec(priority="interactive"))
    other_family = queue.enqueue(tiny_spec(model="tiny-xl"))

    assert queue.position(urgent) == 1
    assert [queue.position(j) for j in bulk] == [2, 3, 4]
    assert queue.position(other_family) == 1
    queued = {e.job_id: e.position for e in queue.events.history() if e.kind == "queued"}
    assert queued == {bulk[0]: 1, bulk[1]: 2, bulk[2]: 3, urgent: 1, other_family: 1}


def test_cancel_a_queued_job(queue: JobQueue) -> None:
    first, second, third = (queue.enqueue(tiny_spec(priority="bulk")) for _ in range(3))

    assert queue.cancel(second) is True

    assert queue.status(second) == "cancelled"
    assert queue.position(second) is None
    assert queue.position(third) == 2
    events = queue.events.history(second)
    assert [e.kind for e in events] == ["queued", "cancelled"]
    assert events[-1].origin == {"platform": "test", "channel": "C1"}
    job = Job.fetch(
        rq_job_id(queue.settings, second), connection=queue.redis, serializer=JSONSerializer
    )
    assert job.get_status() == JobStatus.CANCELED
    assert queue.cancel(second) is False  # already ended
    assert queue.cancel("nosuchjob") is False
    assert queue.status("nosuchjob") is None and queue.spec("nosuchjob") is None
    assert queue.status(first) == "queued"


def test_jobs_for_lists_one_requesters_waiting_jobs(queue: JobQueue) -> None:
    mine = [queue.enqueue(tiny_spec(requested_by="U1", priority="bulk")) for _ in range(2)]
    urgent = queue.enqueue(tiny_spec(requested_by="U1"))
    queue.enqueue(tiny_spec(requested_by="U2"))
    queue.cancel(mine[0])

    listed = queue.jobs_for("U1")

    assert [(j.job_id, j.state, j.position) for j in listed] == [
        (mine[1], "queued", 3),
        (urgent, "queued", 1),
    ]
    assert listed[0].spec.requested_by == "U1"
    assert queue.jobs_for("nobody") == []
    # The cancelled job was pruned from the index.
    assert queue.redis.scard(f"{queue.settings.key_prefix}:active:U1") == 2


def test_an_unknown_model_is_refused_before_queueing(queue: JobQueue) -> None:
    from engine.errors import CatalogError

    with pytest.raises(CatalogError, match="unknown model"):
        queue.enqueue(tiny_spec(model="nosuch"))
    assert queue.events.history() == []


def test_prefix_characters_rq_refuses_are_replaced() -> None:
    settings = Settings(key_prefix="team:a b")
    assert rq_job_id(settings, "abc") == "team-a-b-abc"
    assert queue_name(settings, "bulk", "sd15") == "team-a-b-bulk-sd15"


def test_the_enqueue_side_never_imports_torch() -> None:
    code = (
        "import sys; import engine.queue, engine.events, engine.embedded; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'engine.render' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
