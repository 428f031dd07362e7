"""What every benchmark script shares: where its Redis is."""

from __future__ import annotations

import argparse
import os

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def add_redis_url(parser: argparse.ArgumentParser) -> None:
    """``--redis-url``: a Redis to use (default: ``REDIS_URL``, else the local one)."""
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        help="a Redis to use (default: REDIS_URL, else 127.0.0.1:6379)",
    )
