"""A job too large for the device's memory fails with a sentence; the cache frees what it
can and the worker goes on with the next job.

The shortage is real: the worker process is put under an address-space limit
(``RLIMIT_AS``) a little above what it holds, so a small job fits and a large one makes the
allocator refuse inside the pipeline call, as a GPU's does (``torch.OutOfMemoryError``
there; ``RuntimeError: DefaultCPUAllocator: can't allocate memory`` on a CPU worker).
"""

from __future__ import annotations

import errno
import resource

import pytest
import torch

from engine.errors import OUT_OF_MEMORY_MESSAGE, exhaustion_error
from tests.engine.faults.limits import LINUX_ONLY, address_space, limited
from tests.engine.jobs_fixtures import Backend, tiny_spec, wait_terminal

pytestmark = LINUX_ONLY

# Room above what the warm worker holds: a 64x64 job needs far less, while a 1536x1536
# job of 4 images needs 36 MiB for each activation of the UNet's first block.
HEADROOM = 64 * 2**20


@pytest.mark.slow
def test_a_job_too_large_for_memory_fails_with_a_sentence_and_the_worker_goes_on(
    faulty: Backend,
) -> None:
    queue, events, worker = faulty.queue, faulty.events, faulty.worker
    # Another model warm beside the default one, and a small job of the default one done,
    # so the worker holds what a small job needs before the limit is set.
    assert wait_terminal(events, queue.enqueue(tiny_spec(model="tiny-xl"))).kind == "done"
    assert wait_terminal(events, queue.enqueue(tiny_spec())).kind == "done"
    loads = worker.stats(faulty.redis)
    pid = worker.proc.pid

    with limited(pid, resource.RLIMIT_AS, address_space(pid) + HEADROOM):
        large = queue.enqueue(tiny_spec(width=1536, height=1536, count=4, steps=1))
        end = wait_terminal(events, large)
        # The next job runs in the same limit: the failed one gave its memory back.
        small = queue.enqueue(tiny_spec(seed=8))
        after = wait_terminal(events, small)

    assert end.kind == "failed" and end.error_kind == "out_of_memory", worker.log_tail()
    assert end.message == OUT_OF_MEMORY_MESSAGE
    assert end.origin == {"platform": "test", "channel": "C1"}
    kinds = [e.kind for e in events.history(large)]
    assert kinds.count("started") == 1 and "done" not in kinds  # not retried
    assert after.kind == "done", worker.log_tail()
    assert worker.proc.poll() is None  # the same process, still serving
    stats = worker.stats(faulty.redis)
    assert stats["loads:tiny"] == loads["loads:tiny"]  # the job's model stayed warm
    # ...and the idle one was let go: the next job of it loads it again.
    assert wait_terminal(events, queue.enqueue(tiny_spec(model="tiny-xl"))).kind == "done"
    assert worker.stats(faulty.redis)["loads:tiny-xl"] == loads["loads:tiny-xl"] + 1
    assert worker.log_tail(lines=10_000).count(f"job {large}: out_of_memory") == 1


def test_what_allocators_raise_is_out_of_memory_and_nothing_else_is() -> None:
    with pytest.raises(RuntimeError) as cpu:  # the CPU allocator refusing a petabyte
        torch.empty(2**50, dtype=torch.uint8)
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    for exc in (cpu.value, cuda, MemoryError()):
        error = exhaustion_error(exc, job_id="j1")
        assert error is not None and error.kind == "out_of_memory", exc
        assert error.message == OUT_OF_MEMORY_MESSAGE
    wrapped = ValueError("decode failed")
    wrapped.__cause__ = cuda
    assert exhaustion_error(wrapped, job_id="j1") is not None
    for other in (RuntimeError("shapes cannot be multiplied"), OSError(errno.EACCES, "no")):
        assert exhaustion_error(other, job_id="j1") is None
