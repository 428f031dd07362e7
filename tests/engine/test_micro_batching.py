"""Micro-batching (issue 15): jobs from different people that can share a forward pass render
in one pipeline call, each with its own images and events; incompatible jobs never merge;
priorities hold. A real worker subprocess on a real Redis, real tiny renders.

Jobs are queued before the worker starts, so that they are all waiting when it takes the
first one: what a busy worker sees when it comes back to its queues.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.events import EventStream
from engine.merging import BATCH_TOLERANCE
from engine.queue import JobQueue
from engine.spec import JobResult, JobSpec, LoraRef
from engine.store import LocalStore
from tests.engine.jobs_fixtures import WorkerProcess, tiny_spec, wait_kind, wait_terminal, wipe
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


class Rig:
    """A queue on the test's real Redis, and the worker processes a test starts."""

    def __init__(self, settings: Any, redis: Any, tmp_path: Any) -> None:
        self.settings = settings
        self.redis = redis
        self.tmp_path = tmp_path
        self.queue = JobQueue(redis=redis, settings=settings)
        self.events: EventStream = self.queue.events
        self.workers: list[WorkerProcess] = []

    def worker(self, label: str = "worker", **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.settings, log_path=self.tmp_path / f"{label}.log", env=env)
        self.workers.append(worker)
        worker.wait_ready(self.redis)
        return worker

    def stats(self, worker: WorkerProcess, *, jobs: int) -> dict[str, int]:
        """``worker``'s counters once it has counted ``jobs`` jobs: it publishes a job's end
        before it counts the job, so a test that saw the end may read the counters early."""
        return wait_for(
            lambda: (stats := worker.stats(self.redis)).get("jobs") == jobs and stats,
            what=f"{worker.name} to count {jobs} job(s)",
        )

    def done(self, job_id: str) -> JobResult:
        end = wait_terminal(self.events, job_id, timeout=120)
        logs = "\n".join(w.log_tail() for w in self.workers)
        assert end.kind == "done", f"{end}\n{logs}"
        assert end.result is not None
        return end.result

    def started_order(self, job_ids: list[str]) -> list[str]:
        """``job_ids`` in the order their ``started`` events were published."""
        started = [e.job_id for e in self.events.history() if e.kind == "started"]
        return [job_id for job_id in started if job_id in job_ids]

    def pixels(self, artifact_id: str) -> np.ndarray:
        data = LocalStore(self.settings.artifacts_dir).get(artifact_id)
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB")).astype(int)


@pytest.fixture()
def rig(settings, redis, tmp_path) -> Iterator[Rig]:
    made = Rig(settings, redis, tmp_path)
    yield made
    for worker in made.workers:
        worker.stop()
    wipe(redis, settings.key_prefix)


def _job(user: str, prompt: str, seed: int, **fields: Any) -> JobSpec:
    origin = {"platform": "test", "channel": "C1", "thread": f"thread-of-{user}"}
    return tiny_spec(prompt=prompt, seed=seed, requested_by=user, origin=origin, **fields)


def test_a_job_of_four_images_renders_in_one_call_that_matches_solo_renders(rig: Rig) -> None:
    four = rig.queue.enqueue(_job("U1", "a red mug", 500, count=4))
    worker = rig.worker()
    batch = rig.done(four)
    stats = rig.stats(worker, jobs=1)
    assert (stats["calls"], stats["images"]) == (1, 4)

    # Each image is the one its seed gives alone (queued one at a time, so none merge).
    for image in batch.images:
        solo = rig.done(rig.queue.enqueue(_job("U1", "a red mug", image.seed)))
        apart = rig.pixels(image.artifact_id) - rig.pixels(solo.images[0].artifact_id)
        assert np.abs(apart).max() <= BATCH_TOLERANCE
    assert rig.stats(worker, jobs=5)["calls"] == 5


def test_compatible_jobs_of_four_people_render_in_one_call(rig: Rig) -> None:
    specs = [
        _job("U1", "a red mug on a table", 11),
        _job("U2", "a green kite over a beach", 22),
        _job("U3", "a blue bicycle in the rain", 33),
        _job("U4", "a (yellow:1.2) lamp, studio light", 44, negative_prompt="blurry"),
    ]
    ids = [rig.queue.enqueue(spec) for spec in specs]
    worker = rig.worker()

    results = {job_id: rig.done(job_id) for job_id in ids}

    stats = rig.stats(worker, jobs=4)
    assert (stats["calls"], stats["images"], stats["merged"]) == (1, 4, 3)
    for spec in specs:
        result = results[spec.id]
        # Each job gets its own images, with its own seeds, in its own thread.
        assert [image.seed for image in result.images] == [spec.seed + k for k in range(spec.count)]
        end = wait_terminal(rig.events, spec.id)
        assert end.origin["thread"] == spec.origin["thread"]
        store = LocalStore(rig.settings.artifacts_dir)
        assert {store.meta(i.artifact_id)["job_id"] for i in result.images} == {spec.id}
        kinds = [e.kind for e in rig.events.history(spec.id)]
        assert kinds[:2] == ["queued", "started"] and kinds.count("done") == 1
        progress = [e for e in rig.events.history(spec.id) if e.kind == "progress"]
        assert progress[-1].step == progress[-1].total == spec.steps * spec.count

    # The merged images are the ones each job gets alone, within the stated tolerance.
    alone = [_job("U9", s.prompt, s.seed, negative_prompt=s.negative_prompt) for s in specs[1:]]
    alone_ids = [rig.queue.enqueue(spec) for spec in alone]
    for spec, job_id in zip(specs[1:], alone_ids, strict=True):
        merged = rig.pixels(results[spec.id].images[0].artifact_id)
        solo = rig.pixels(rig.done(job_id).images[0].artifact_id)
        assert np.abs(merged - solo).max() <= BATCH_TOLERANCE


def test_incompatible_jobs_are_never_merged(rig: Rig) -> None:
    specs = [
        _job("U1", "a mug", 1, loras=[LoraRef(name="tiny-style", weight=0.5)]),
        _job("U2", "a kite", 2, loras=[LoraRef(name="tiny-style", weight=0.8)]),  # weight
        _job("U3", "a lamp", 3, width=96),  # size
        _job("U4", "a bike", 4, steps=3),  # steps
        _job("U5", "a cat", 5, cfg_scale=4.0),  # CFG
    ]
    ids = [rig.queue.enqueue(spec) for spec in specs]
    worker = rig.worker()

    for job_id in ids:
        rig.done(job_id)

    stats = rig.stats(worker, jobs=5)
    assert (stats["calls"], stats["merged"]) == (5, 0)


def test_an_interactive_job_goes_before_waiting_bulk_jobs(rig: Rig) -> None:
    bulk = [
        rig.queue.enqueue(_job("B", f"row {k}", k, priority="bulk", width=96)) for k in range(3)
    ]
    interactive = rig.queue.enqueue(_job("U1", "a mug", 9))  # arrives last, not mergeable
    rig.worker()

    for job_id in [*bulk, interactive]:
        rig.done(job_id)

    assert rig.started_order([*bulk, interactive])[0] == interactive


def test_bulk_jobs_ride_along_only_within_the_cap_and_after_interactive_ones(rig: Rig) -> None:
    # On a CPU the tiny model's family renders at most 4 images per call.
    leader = _job("U1", "a mug", 1, count=2)
    early_bulk = _job("B", "row 1", 2, count=2, priority="bulk")  # waiting longest
    late_interactive = _job("U2", "a kite", 3)
    small_bulk = _job("B", "row 2", 4, priority="bulk")
    ids = [rig.queue.enqueue(spec) for spec in (leader, early_bulk, late_interactive, small_bulk)]
    worker = rig.worker()

    for job_id in ids:
        rig.done(job_id)

    # First call: the leader (2), the waiting interactive job (1) and the bulk job that
    # still fits (1): 4 images. The bulk job of 2 did not fit and had its own call.
    stats = rig.stats(worker, jobs=4)
    assert (stats["calls"], stats["images"], stats["merged"]) == (2, 6, 2)
    order = rig.started_order(ids)
    assert order[-1] == early_bulk.id
    assert set(order[:3]) == {leader.id, late_interactive.id, small_bulk.id}


def test_merging_off_renders_each_job_in_its_own_call(rig: Rig) -> None:
    ids = [rig.queue.enqueue(_job(f"U{k}", f"prompt {k}", k)) for k in range(3)]
    worker = rig.worker(PROOFROOM_MICRO_BATCHING="0")

    for job_id in ids:
        rig.done(job_id)

    stats = rig.stats(worker, jobs=3)
    assert (stats["calls"], stats["merged"]) == (3, 0)


def test_a_crash_during_a_merged_call_gives_every_job_back(rig: Rig) -> None:
    ids = [rig.queue.enqueue(_job(f"U{k}", f"prompt {k}", k, steps=40)) for k in range(4)]
    first = rig.worker("first")
    for job_id in ids:
        wait_kind(rig.events, job_id, "progress", timeout=90)  # all four in the call
    first.signal(signal.SIGKILL)
    first.wait()

    second = rig.worker("second")
    for job_id in ids:
        rig.done(job_id)

    for job_id in ids:
        kinds = [e.kind for e in rig.events.history(job_id)]
        assert kinds.count("done") == 1 and kinds.count("started") == 2
    assert rig.stats(second, jobs=4)


def test_cancelling_one_job_of_a_merged_call_leaves_the_others(rig: Rig) -> None:
    ids = [rig.queue.enqueue(_job(f"U{k}", f"prompt {k}", k, steps=40)) for k in range(3)]
    rig.worker()
    for job_id in ids:
        wait_kind(rig.events, job_id, "progress", timeout=90)

    assert rig.queue.cancel(ids[1])

    end = wait_terminal(rig.events, ids[1], timeout=120)
    assert (end.kind, end.message) == ("cancelled", "cancelled while rendering")
    for job_id in (ids[0], ids[2]):
        assert len(rig.done(job_id).images) == 1
