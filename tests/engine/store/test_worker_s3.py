"""End to end on the S3 store: a ``python -m engine.worker`` process configured by its
environment (``PROOFROOM_STORE=s3``) reads a job's input from the bucket and writes the
tiny model's images into it; this process lists them by job and reads them back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import redis as redis_lib
from PIL import Image

from engine.queue import JobQueue
from engine.spec import Mode
from engine.store import S3Store, store_from_settings
from tests.engine.jobs_fixtures import (
    WorkerProcess,
    isolated_settings,
    new_prefix,
    tiny_spec,
    wait_terminal,
    wipe,
)
from tests.s3_server import CREDENTIALS

pytestmark = pytest.mark.slow


def test_a_worker_renders_into_the_s3_store(
    redis_url: str, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    prefix = new_prefix()
    store_env = {
        "PROOFROOM_STORE": "s3",
        "PROOFROOM_S3_BUCKET": s3_bucket,
        "PROOFROOM_S3_PREFIX": prefix,
        "PROOFROOM_S3_ENDPOINT_URL": s3_endpoint,
    }
    settings = isolated_settings(
        prefix=prefix,
        redis_url=redis_url,
        data_dir=tmp_path,
        store="s3",
        s3_bucket=s3_bucket,
        s3_prefix=prefix,
        s3_endpoint_url=s3_endpoint,
    )
    store = store_from_settings(settings)
    assert isinstance(store, S3Store)
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(photo, format="PNG")
    init = store.put(photo.getvalue(), suffix=".png", meta={"role": "init"})  # as the bot does
    client = redis_lib.Redis.from_url(redis_url)
    # The worker's own environment: no other way for it to know the bucket or the keys.
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log", env=store_env | CREDENTIALS)
    try:
        worker.wait_ready(client, timeout=120)
        queue = JobQueue(redis=client, settings=settings)
        text = tiny_spec(count=2)
        edit = tiny_spec(mode=Mode.img2img, init_image=init)
        ends = {spec.id: wait_terminal(queue.events, queue.enqueue(spec)) for spec in (text, edit)}
    finally:
        worker.stop()
        wipe(client, prefix)

    for spec in (text, edit):
        end = ends[spec.id]
        assert end.kind == "done", f"{end.message}\n{worker.log_tail()}"
        assert end.result is not None
        ids = sorted(image.artifact_id for image in end.result.images)
        assert store.list_job(spec.id) == ids and len(ids) == spec.count
        for artifact_id in ids:
            assert store.get(artifact_id)[:8] == b"\x89PNG\r\n\x1a\n"
            meta = store.meta(artifact_id) or {}
            assert meta["job_id"] == spec.id and meta["inputs"] == spec.input_images()
    assert not (tmp_path / "artifacts").exists()  # nothing went to the local folder
