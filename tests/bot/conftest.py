"""Fixtures of the bot tests: the ``chat`` conversation (see ``bot.testing.plugin``), an
embedded ``worker``, :func:`queued_jobs`, and ``cli_env`` for the command lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from rq import Queue

from bot.testing.plugin import bot_settings, chat  # noqa: F401
from engine.embedded import start_embedded_worker
from engine.queue import queue_names
from engine.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The environment of a ``proofroom`` command line run in-process: this test's data
    folder (returned), the shared tiny-model cache, the CPU, the repository's templates."""
    data = tmp_path / "data"
    monkeypatch.setenv("PROOFROOM_MODEL_CACHE_DIR", str(REPO_ROOT / ".proofroom" / "models"))
    monkeypatch.setenv("PROOFROOM_DATA_DIR", str(data))
    monkeypatch.setenv("PROOFROOM_DEVICE", "cpu")
    monkeypatch.setenv("PROOFROOM_TEMPLATES_DIR", str(REPO_ROOT / "templates"))
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


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
