"""The artifact store running out of room: the job fails with a sentence for its requester
(an admin has to make room), nothing half-written stays under an artifact's name, no
``done`` event names an image that is not whole, and once there is room again the worker's
next job is stored.

The shortage is real: the worker process is put under a file size limit
(``RLIMIT_FSIZE``, smaller than one PNG) so its writes fail with ``EFBIG`` as they fail with
``ENOSPC`` on a full disk (Python ignores ``SIGXFSZ``, so the write fails instead of killing
the process). Tests run as root, where folder permissions would refuse nothing.
"""

from __future__ import annotations

import errno
import io
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import exhaustion_error, storage_full_message
from engine.settings import REPO_ROOT
from engine.store import LocalStore
from tests.engine.faults.limits import LINUX_ONLY, limited
from tests.engine.jobs_fixtures import Backend, tiny_spec, wait_terminal

pytestmark = LINUX_ONLY

LIMIT = 4096  # bytes: a 64x64 PNG of the tiny model is about 12 KB


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_full_store_fails_the_job_with_a_sentence_and_serves_nothing_half_written(
    faulty: Backend,
) -> None:
    queue, events, worker = faulty.queue, faulty.events, faulty.worker
    root = faulty.settings.artifacts_dir
    root.mkdir(parents=True, exist_ok=True)
    before = _files(root)

    # The worker's own log file is over the limit too: its lines of that moment are lost.
    with limited(worker.proc.pid, resource.RLIMIT_FSIZE, LIMIT):
        job_id = queue.enqueue(tiny_spec(count=2, seed=11))
        end = wait_terminal(events, job_id)

    assert end.kind == "failed" and end.error_kind == "storage_full", worker.log_tail()
    assert end.message == storage_full_message(job_id)
    kinds = [e.kind for e in events.history(job_id)]
    assert kinds.count("started") == 1 and "done" not in kinds  # not retried into a full disk
    # Nothing of it was left: no temporary file, no metadata without its image, no index.
    assert _files(root) == before
    assert LocalStore(root).list_job(job_id) == []

    # Room again: the same worker stores the next job whole.
    after = wait_terminal(events, queue.enqueue(tiny_spec(count=2, seed=12)))
    assert after.kind == "done", worker.log_tail()
    assert worker.proc.poll() is None
    store = LocalStore(root)
    done = [e for e in events.history() if e.kind == "done"]
    assert done and after in done
    for event in done:  # every image a `done` names is there and whole
        assert event.result is not None
        for image in event.result.images:
            with Image.open(io.BytesIO(store.get(image.artifact_id))) as png:
                png.load()  # a truncated PNG fails here
                assert png.size == (image.width, image.height)


def test_a_store_write_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    # In a child process under the limit; the store is used as the worker uses it.
    code = (
        "import sys\n"
        "from engine.store import LocalStore\n"
        "store = LocalStore(sys.argv[1])\n"
        "try:\n"
        "    store.put(bytes(3 * 4096), suffix='.png', meta={'job_id': 'j1', 'index': 0})\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
        "else:\n"
        "    print('stored')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT)),
    )

    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert _files(tmp_path) == set()  # no partial image, no metadata, no index entry
    assert LocalStore(tmp_path).list_job("j1") == []


def test_a_full_disk_or_quota_is_a_sentence_naming_the_job() -> None:
    with pytest.raises(OSError) as full, open("/dev/full", "wb") as device:
        device.write(b"png")
        device.flush()
    for exc in (full.value, OSError(errno.EDQUOT, "quota"), OSError(errno.EFBIG, "too big")):
        error = exhaustion_error(exc, job_id="abc123")
        assert error is not None and error.kind == "storage_full", exc
        assert error.message == (
            "the image store is full, so this job's images could not be saved; "
            "ask an admin to free space, then try again (job abc123)"
        )
