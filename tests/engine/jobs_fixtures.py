"""Helpers for the queue/worker tests: tiny specs, worker subprocesses, waiting on events.

Every key a helper writes carries the test's key prefix (``{prefix}*`` or ``rq:*{prefix}*``),
so :func:`wipe` (and the ``redis`` fixture of ``tests/conftest.py``) can remove it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
import weakref
from pathlib import Path
from typing import Any

import redis as redis_lib
from rq.worker_registration import REDIS_WORKER_KEYS

from engine.events import EventStream, JobEvent
from engine.queue import JobQueue
from engine.settings import REPO_ROOT, Settings
from engine.spec import JobSpec
from engine.worker import stats_key
from tests.waiting import wait_for  # noqa: F401 (re-exported to the tests here)

MODEL_CACHE = REPO_ROOT / ".proofroom" / "models"  # shared by all tests: tiny models


def tiny_spec(**fields: Any) -> JobSpec:
    """A spec for the tiny model: 64x64, 2 steps, a fixed seed."""
    base: dict[str, Any] = {
        "prompt": "a red mug on a table",
        "model": "tiny",
        "width": 64,
        "height": 64,
        "steps": 2,
        "sampler": "Euler a",
        "seed": 7,
        "requested_by": "U1",
        "origin": {"platform": "test", "channel": "C1"},
    }
    return JobSpec(**{**base, **fields})


def slow_spec(**fields: Any) -> JobSpec:
    """A spec that keeps a worker busy for several seconds (and can be cancelled mid-way)."""
    return tiny_spec(**{"steps": 60, "count": 8, **fields})


def new_prefix() -> str:
    """A key prefix of one test (the ``key_prefix`` fixture) or one test module."""
    return f"prtest-{uuid.uuid4().hex[:10]}"


def isolated_settings(
    *, prefix: str, redis_url: str | None, data_dir: Path, **extra: Any
) -> Settings:
    """Settings isolated to ``prefix`` and ``data_dir``."""
    return Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        data_dir=data_dir,
        lora_dir=data_dir / "loras",
        model_cache_dir=MODEL_CACHE,
        templates_dir=REPO_ROOT / "templates",
        **extra,
    )


def worker_stats(redis: redis_lib.Redis, settings: Settings, worker_name: str) -> dict[str, int]:
    """The counters of worker ``worker_name`` (``jobs``, ``loads``, ``loads:<model>``), read
    from Redis as another process would."""
    raw = redis.hgetall(stats_key(settings, worker_name))
    return {k.decode(): int(v) for k, v in raw.items() if v.isdigit()}


def wipe(redis: redis_lib.Redis, prefix: str) -> None:
    """Delete every key of ``prefix`` and its members in RQ's global sets."""
    for pattern in (f"{prefix}*", f"rq:*{prefix}*"):
        keys = list(redis.scan_iter(match=pattern, count=500))
        if keys:
            redis.delete(*keys)
    for key in ("rq:queues", REDIS_WORKER_KEYS):
        stale = [m for m in redis.smembers(key) if prefix.encode() in m]
        if stale:
            redis.srem(key, *stale)


class _Tail:
    """Events read so far from one stream; each poll reads only what is new, so waiting on a
    long stream does not re-parse it (on 2 cores that would slow the worker under test)."""

    def __init__(self, events: EventStream) -> None:
        self.events = events
        self.last: str | None = None
        self.seen: list[JobEvent] = []

    def poll(self) -> list[JobEvent]:
        low = f"({self.last}" if self.last else "-"
        entries: Any = self.events.redis.xrange(self.events.key, min=low, max="+")
        for entry_id, fields in entries:
            self.last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            self.seen.append(JobEvent.model_validate_json(fields[b"event"]))
        return self.seen


_tails: weakref.WeakKeyDictionary[EventStream, _Tail] = weakref.WeakKeyDictionary()


def _tail(events: EventStream) -> _Tail:
    if events not in _tails:
        _tails[events] = _Tail(events)
    return _tails[events]


def wait_terminal(events: EventStream, job_id: str, *, timeout: float = 60) -> JobEvent:
    """The terminal event of ``job_id``, once published."""
    wait_for(lambda: events.terminal_kind(job_id), timeout=timeout, what=f"job {job_id} to end")
    return wait_kind(events, job_id, "done", "failed", "cancelled", timeout=5)


def wait_kind(events: EventStream, job_id: str, *kinds: str, timeout: float = 60) -> JobEvent:
    """The first event of ``job_id`` of one of ``kinds``, once published."""

    def found() -> JobEvent | None:
        return next(
            (e for e in _tail(events).poll() if e.job_id == job_id and e.kind in kinds), None
        )

    return wait_for(found, timeout=timeout, what=f"a {'/'.join(kinds)} event of job {job_id}")


def process_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a ``proofroom`` process started by a test the test's
    settings: its Redis and key prefix, its folders, the repository on the path, offline."""
    return {
        "REDIS_URL": settings.redis_url or "",
        "PROOFROOM_KEY_PREFIX": settings.key_prefix,
        "PROOFROOM_DATA_DIR": str(settings.data_dir),
        "PROOFROOM_LORA_DIR": str(settings.lora_dir),
        "PROOFROOM_MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "PROOFROOM_TEMPLATES_DIR": str(settings.templates_dir),
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
    }


class WorkerProcess:
    """``python -m engine.worker`` in a subprocess, configured through the environment
    (``env``: more variables, e.g. ``PROOFROOM_MICRO_BATCHING``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        log_path: Path,
        args: list[str] | None = None,
        heartbeat_ttl: float = 2.0,
        heartbeat_interval: float = 0.5,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.name = f"{settings.key_prefix}-w{uuid.uuid4().hex[:6]}"
        self.log_path = log_path
        env = {
            **os.environ,
            **process_env(settings),
            "PROOFROOM_PROGRESS_INTERVAL_S": str(settings.progress_interval_s),
            "PROOFROOM_JOB_RETRIES": str(settings.job_retries),
            **(env or {}),
        }
        command = [
            sys.executable,
            "-m",
            "engine.worker",
            "--name",
            self.name,
            "--heartbeat-ttl",
            str(heartbeat_ttl),
            "--heartbeat-interval",
            str(heartbeat_interval),
            *(args or []),
        ]
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def stats_key(self) -> str:
        """The worker's stats hash."""
        return stats_key(self.settings, self.name)

    def stats(self, redis: redis_lib.Redis) -> dict[str, int]:
        """The worker's counters (``jobs``, ``loads``, ``loads:<model>``)."""
        return worker_stats(redis, self.settings, self.name)

    def wait_ready(self, redis: redis_lib.Redis, timeout: float = 60) -> None:
        """Wait until the default model is warm and the worker is registered with RQ."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            return bool(redis.exists(self.stats_key) and redis.exists(f"rq:worker:{self.name}"))

        wait_for(ready, timeout=timeout, what=f"worker {self.name} to start")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the worker."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to exit; its exit code."""
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Stop the worker (SIGTERM, then SIGKILL) and close its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log (for assertion messages)."""
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Backend:
    """One way of running the system in a test: a real Redis and a worker subprocess, or the
    embedded default (fakeredis and a worker thread)."""

    def __init__(self, *, kind: str, settings: Settings, redis: redis_lib.Redis, worker: Any):
        self.kind = kind
        self.settings = settings
        self.redis = redis
        self.worker = worker
        self.queue = JobQueue(redis=redis, settings=settings)
        self.events = self.queue.events

    @property
    def stats_key(self) -> str:
        """The worker's stats hash."""
        return stats_key(self.settings, self.worker.name)

    def stats(self) -> dict[str, int]:
        """The worker's counters, read from Redis as another process would."""
        return worker_stats(self.redis, self.settings, self.worker.name)


def settings_and_redis(request: Any, *, tmp_path: Path, prefix: str, **extra: Any) -> tuple:
    """For a fixture parametrized ``["redis", "fakeredis"]``: isolated settings and a client,
    on the real server (cleaned by the ``redis`` fixture) or on a fresh in-memory one."""
    import fakeredis

    if request.param == "redis":
        client = request.getfixturevalue("redis")
        url = request.getfixturevalue("redis_url")
    else:
        client, url = fakeredis.FakeRedis(server=fakeredis.FakeServer()), None
    return isolated_settings(prefix=prefix, redis_url=url, data_dir=tmp_path, **extra), client
