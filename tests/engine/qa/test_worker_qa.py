"""QA through a real worker process (``python -m engine.worker``, real Redis, the tiny
model): with the ``rerender`` policy and a threshold every image fails, each image is
rendered once more and posted flagged; the flags reach the ``done`` event's image entries
and the stored image."""

from __future__ import annotations

import pytest
import redis as redis_lib

from engine.metadata import read_proofroom
from engine.qa.assess import rerender_seed
from engine.queue import JobQueue
from engine.store import LocalStore
from tests.engine.jobs_fixtures import (
    WorkerProcess,
    isolated_settings,
    new_prefix,
    tiny_spec,
    wait_terminal,
    wipe,
)

pytestmark = pytest.mark.slow


def test_a_worker_rerenders_flagged_images_once_and_publishes_their_flags(
    redis_url: str, tmp_path
) -> None:
    prefix = new_prefix()
    settings = isolated_settings(prefix=prefix, redis_url=redis_url, data_dir=tmp_path)
    client = redis_lib.Redis.from_url(redis_url)
    worker = WorkerProcess(
        settings,
        log_path=tmp_path / "worker.log",
        env={"PROOFROOM_QA__POLICY": "rerender", "PROOFROOM_QA__MIN_SHARPNESS": "1e9"},
    )
    try:
        worker.wait_ready(client)
        queue = JobQueue(redis=client, settings=settings)
        spec = tiny_spec(count=2)
        queue.enqueue(spec)
        event = wait_terminal(queue.events, spec.id, timeout=120)
        assert event.kind == "done", (event.message, worker.log_tail())
        assert event.result is not None
        store = LocalStore(settings.artifacts_dir)
        for image in event.result.images:
            first = spec.image_seed(image.index)
            assert image.seed == rerender_seed(spec.id, image.index, first)
            assert [f["check"] for f in image.flags] == ["sharpness"]
            assert image.flags[0]["reason"].startswith("soft focus: sharpness ")
            assert image.rerendered_from is not None and image.rerendered_from["seed"] == first
            assert "rerendered_from" not in image.rerendered_from  # one level: no loop
            qa = read_proofroom(store.get(image.artifact_id))["qa"]
            assert qa["flags"] == image.flags
    finally:
        worker.stop()
        wipe(client, prefix)
