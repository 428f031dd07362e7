"""Fixtures of the bot tests: the ``chat`` conversation (see ``bot.testing.plugin``), an
embedded ``worker``, and :func:`queued_jobs`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib
from rq import Queue

from bot.testing.plugin import bot_settings, chat  # noqa: F401
from engine.embedded import start_embedded_worker
from engine.queue import queue_names
from engine.settings import Settings


@pytest.fixture()
def worker(settings: Settings, redis: redis_lib.Redis) -> Iterator[None]:
    """The real RQ worker in a thread, on the real Redis, rendering ``tiny``. It uses the
    ``redis`` fixture's client, so it stops before that fixture deletes the test's keys."""
    handle = start_embedded_worker(settings=settings, redis=redis)
    yield
    handle.stop()


def queued_jobs(settings: Settings, redis: redis_lib.Redis) -> int:
    """Jobs waiting in this test's RQ queues."""
    return sum(Queue(name, connection=redis).count for name in queue_names(settings))
