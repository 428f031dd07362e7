"""docker/healthcheck.py against a real Redis, run as the containers run it (a process with
the settings in its environment): a worker is healthy while its heartbeat lives, a bot while
its event pump reads, and neither when Redis does not answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from bot.settings import BotSettings
from engine.events import EventStream
from engine.queue import rq_prefix
from engine.recovery import Heartbeat, alive_key
from engine.settings import REPO_ROOT, Settings
from engine.worker import worker_name
from tests.redis_server import free_port

SCRIPT = REPO_ROOT / "docker" / "healthcheck.py"


def run_check(
    *args: str, settings: Settings, cwd: Path, redis_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The health check as Docker runs it, with this test's Redis and key prefix."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PROOFROOM_REDIS_URL")}
    env["PROOFROOM_KEY_PREFIX"] = settings.key_prefix
    if redis_url or settings.redis_url:
        env["REDIS_URL"] = redis_url or str(settings.redis_url)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,  # no stray .env
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def read_as_bot(redis: redis_lib.Redis, settings: Settings, platform: str) -> None:
    """What a bot's event pump does: one read of the job events in its platform's group."""
    bot_settings = BotSettings(_env_file=None)  # type: ignore[call-arg]
    EventStream(redis=redis, settings=settings).read(
        group=f"{bot_settings.event_group}-{platform}",
        consumer=bot_settings.event_consumer,
        block_ms=10,
    )


def test_a_worker_is_healthy_while_its_heartbeat_lives(redis, settings, tmp_path):
    name = worker_name(settings)  # named as `proofroom worker` names itself on this host
    heartbeat = Heartbeat(redis=redis, settings=settings, worker_name=name)
    heartbeat.start()
    try:
        done = run_check("worker", settings=settings, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert name in done.stdout
    finally:
        heartbeat.stop()  # a clean stop drops the alive key
    done = run_check("worker", settings=settings, cwd=tmp_path)
    assert done.returncode == 1
    assert "no worker on this host" in done.stderr


def test_a_worker_on_another_host_does_not_make_this_one_healthy(redis, settings, tmp_path):
    elsewhere = f"{rq_prefix(settings)}-gpu-host-2-4242-abcdef"
    # Also one whose host name starts with this one's ("vm" and "vm-2").
    next_door = worker_name(settings).rsplit("-", 2)[0] + "-2-4242-abcdef"
    for name in (elsewhere, next_door):
        redis.set(alive_key(settings, name), "1", px=15_000)
    done = run_check("worker", settings=settings, cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    # Named explicitly (a worker started with --name), it is found.
    done = run_check("worker", "--name", elsewhere, settings=settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_bot_is_healthy_once_its_pump_reads_and_only_for_its_platform(redis, settings, tmp_path):
    done = run_check("bot", "slack", settings=settings, cwd=tmp_path)
    assert done.returncode == 1  # never read: no group yet
    read_as_bot(redis, settings, "slack")
    done = run_check("bot", "slack", settings=settings, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_check("bot", "discord", settings=settings, cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "discord" in done.stderr


def test_a_bot_whose_pump_stopped_reading_is_unhealthy(redis, settings, tmp_path):
    read_as_bot(redis, settings, "discord")
    time.sleep(0.6)
    done = run_check("bot", "discord", "--max-idle", "0.2", settings=settings, cwd=tmp_path)
    version = tuple(int(part) for part in redis.info("server")["redis_version"].split(".")[:2])
    if version >= (7, 2):  # idle counts every read, also one that found nothing
        assert done.returncode == 1, done.stdout
        assert "last read" in done.stderr
    else:  # older Redis: only deliveries count, so the check cannot tell quiet from stuck
        assert done.returncode == 0, done.stderr
        assert "idle time unknown" in done.stdout


@pytest.mark.parametrize("role", [["worker"], ["bot", "slack"]])
def test_nothing_is_healthy_without_redis(settings, tmp_path, role):
    started = time.monotonic()
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    done = run_check(*role, settings=settings, cwd=tmp_path, redis_url=nobody)
    assert done.returncode == 1
    assert "does not answer" in done.stderr
    assert time.monotonic() - started < 10  # well within Docker's 10 s timeout


def test_no_redis_url_is_unhealthy(settings, tmp_path):
    done = run_check(
        "worker", settings=settings.model_copy(update={"redis_url": None}), cwd=tmp_path
    )
    assert done.returncode == 1
    assert "REDIS_URL is not set" in done.stderr


def test_the_service_is_healthy_while_its_url_answers_200(redis, settings, tmp_path):
    from bot.serve.service import HttpService

    service = HttpService(
        settings=settings, redis=redis, host="127.0.0.1", port=0, known_pools=frozenset
    ).start()
    try:
        done = run_check("http", service.url + "/healthz", settings=settings, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "answered 200" in done.stdout
        # /readyz without a worker: 503, which the check reports.
        done = run_check("http", service.url + "/readyz", settings=settings, cwd=tmp_path)
        assert done.returncode == 1
        assert "answered 503" in done.stderr
    finally:
        service.close()
    done = run_check("http", service.url + "/healthz", settings=settings, cwd=tmp_path)
    assert done.returncode == 1
    assert "does not answer" in done.stderr
