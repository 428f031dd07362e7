"""Resource limits put on a running worker process from outside (``prlimit``) and lifted
again: what a GPU out of memory or a full disk looks like to the process, for real. The
worker is left untouched; only the kernel refuses its allocations or its writes."""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# prlimit and /proc: the tests that put a fault on a worker process run where those exist.
LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="puts Linux resource limits on a worker"
)


@contextmanager
def limited(pid: int, which: int, soft: int) -> Iterator[None]:
    """Process ``pid`` under the soft limit ``soft`` of resource ``which`` inside the block,
    under its own limits again after it. The hard limit stays as it was, so lifting needs
    no privilege."""
    before = resource.prlimit(pid, which)
    resource.prlimit(pid, which, (soft, before[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, which, before)


def address_space(pid: int) -> int:
    """Bytes of address space process ``pid`` holds now (``VmSize``): what ``RLIMIT_AS``
    counts."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmSize for process {pid}")
