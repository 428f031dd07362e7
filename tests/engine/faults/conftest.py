"""One real worker process on the real Redis for the fault tests of this folder (a warm
model, one job after another, as a GPU worker serves a team); each test puts its fault on
that process and lifts it again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from tests.engine.jobs_fixtures import Backend, WorkerProcess, isolated_settings, new_prefix, wipe


@pytest.fixture(scope="package")
def faulty(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A ``python -m engine.worker`` subprocess, warm and registered, with its settings,
    queue and event stream."""
    prefix = new_prefix()
    data = tmp_path_factory.mktemp("faults")
    settings = isolated_settings(prefix=prefix, redis_url=redis_url, data_dir=data)
    client = redis_lib.Redis.from_url(redis_url)
    # On the CPU wherever the tests run: the limits put on the process bound its memory and
    # its files, and a GPU's memory is not in them.
    worker = WorkerProcess(settings, log_path=data / "worker.log", env={"PROOFROOM_DEVICE": "cpu"})
    try:
        worker.wait_ready(client, timeout=120)
        yield Backend(kind="process", settings=settings, redis=client, worker=worker)
    finally:
        worker.stop()
        wipe(client, prefix)
        client.close()
