"""A job that runs past its timeout is stopped mid-render, reported with a sentence, not
retried, and the worker process goes on with the next job. The timeout is the job's own
(RQ's, from ``settings.job_timeout_s`` where it was enqueued); the worker enforces it with
SIGALRM in its main thread (the embedded worker thread's timer is covered in
``tests/engine/test_embedded.py::test_job_timeouts_work_in_a_thread``)."""

from __future__ import annotations

import pytest
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from engine.queue import JobQueue, rq_job_id
from tests.engine.jobs_fixtures import Backend, slow_spec, tiny_spec, wait_for, wait_terminal


@pytest.mark.slow
def test_a_job_past_its_timeout_is_stopped_reported_and_the_worker_goes_on(
    faulty: Backend,
) -> None:
    # Long enough to be inside the render when it strikes, far shorter than the job.
    settings, worker = faulty.settings.model_copy(update={"job_timeout_s": 2}), faulty.worker
    hurried = JobQueue(redis=faulty.redis, settings=settings)
    jobs_before = worker.stats(faulty.redis).get("jobs", 0)
    spec = slow_spec()

    job_id = hurried.enqueue(spec)
    end = wait_terminal(faulty.events, job_id, timeout=60)

    assert end.kind == "failed" and end.error_kind == "timeout", worker.log_tail()
    assert end.message == (
        "the job took longer than 2 s and was stopped; "
        "try fewer images, fewer steps or a smaller size"
    )
    history = faulty.events.history(job_id)
    steps = [e.step for e in history if e.kind == "progress" and e.step is not None]
    assert max(steps, default=0) < spec.steps * spec.count  # stopped, not run to the end
    assert [e.kind for e in history].count("started") == 1  # the same job would time out again
    job = Job.fetch(rq_job_id(settings, job_id), connection=faulty.redis, serializer=JSONSerializer)
    wait_for(lambda: job.get_status() == JobStatus.FAILED, what="RQ to fail the job")

    # The same process takes the next job and finishes it.
    after = wait_terminal(faulty.events, faulty.queue.enqueue(tiny_spec(seed=9)))
    assert after.kind == "done", worker.log_tail()
    assert worker.proc.poll() is None
    assert wait_for(lambda: worker.stats(faulty.redis).get("jobs") == jobs_before + 2)
