"""Shared fixtures: a real Redis (never a fake in tests that claim Redis), isolated
settings per test, and offline Hugging Face.

Redis is found in this order: ``REDIS_URL``; a server answering on 127.0.0.1:6379;
a throwaway ``redis-server`` started on a free port for this session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# One torch (OpenMP) thread per process, set here, before any test module can import torch:
# torch reads it once, at import, and the first importer is a bot test collected long before
# tests/engine/conftest.py. Under `make test` two pytest processes and the worker
# subprocesses they start share two cores; OpenMP threads spinning on cores another process
# needs made renders tens of times slower. Worker subprocesses inherit it. Set
# OMP_NUM_THREADS yourself to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# No test sees the shipped content calendars unless it asks for them: a bot started by any
# test (or a process it spawns) reads its calendars from this empty folder, so what the
# examples would post on today's date never lands in another test's chat.
_NO_CALENDARS = tempfile.TemporaryDirectory(prefix="proofroom-no-calendars-")
os.environ["PROOFROOM_CALENDARS_DIR"] = _NO_CALENDARS.name
# Nor the developer's drop-in model folders (./models, ./loras, ./embeddings, ./vaes, an A1111
# install): every Settings made in a test, and every process it starts, scans empty ones
# unless the test names its own (the ``settings`` fixture below does).
_NO_MODELS = tempfile.TemporaryDirectory(prefix="proofroom-no-models-")
for _kind in ("MODEL", "LORA", "EMBEDDING", "VAE", "A1111"):
    os.environ[f"PROOFROOM_{_kind}_DIR"] = os.path.join(_NO_MODELS.name, _kind.lower())

from engine.settings import Settings  # noqa: E402
from tests.engine.jobs_fixtures import isolated_settings, new_prefix, wipe  # noqa: E402
from tests.redis_server import RedisServer, answers  # noqa: E402


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server for this test session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379/0"
        return
    if shutil.which("redis-server") is None:
        pytest.exit(
            "no Redis: set REDIS_URL, run one on 127.0.0.1:6379, or install redis-server "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)",
            returncode=3,
        )
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"), persistent=False)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=3)
    yield server.url
    server.stop()


@pytest.fixture()
def key_prefix() -> str:
    """A key prefix of this test alone, so tests never see each other's keys."""
    return new_prefix()


@pytest.fixture()
def redis(redis_url: str, key_prefix: str) -> Iterator[redis_lib.Redis]:
    """A client on the real server; deletes only what this test made afterwards: its
    prefix's keys, RQ's keys for its queues and jobs, and its entries in RQ's global sets."""
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    wipe(client, key_prefix)
    client.close()


@pytest.fixture()
def settings(tmp_path: Path, redis_url: str, key_prefix: str) -> Settings:
    """Settings isolated to this test: own key prefix, own data and LoRA dirs, empty drop-in
    model, embedding and VAE dirs. Model cache is shared across tests (tiny models are
    deterministic)."""
    return isolated_settings(
        prefix=key_prefix,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        model_dir=tmp_path / "models",
        embedding_dir=tmp_path / "embeddings",
        vae_dir=tmp_path / "vaes",
    )
