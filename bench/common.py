"""What the benchmark scripts share: where their Redis is, and how a step is timed."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def add_redis_url(parser: argparse.ArgumentParser) -> None:
    """``--redis-url``: a Redis to use (default: ``REDIS_URL``, else the local one)."""
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        help="a Redis to use (default: REDIS_URL, else 127.0.0.1:6379)",
    )


def timed(action: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds ``action()`` takes, with ``sync()`` before and after (a GPU's queue drained,
    so the time is the work's, not its launch's)."""
    sync()
    started = time.perf_counter()
    action()
    sync()
    return time.perf_counter() - started
