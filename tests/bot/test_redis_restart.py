"""The bot's event loop through a Redis restart, on a throwaway ``redis-server`` of its own: one
log line when Redis goes, one when it is back; a queued job that Redis came back without is
told in its thread, one that a persistent Redis kept is left alone. No worker: the jobs stay
queued (``tests/engine/test_redis_restart.py`` restarts Redis under a rendering worker)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from bot.jobs.followed import LOST_MESSAGE
from bot.testing.chat import FakeChat
from tests.engine.jobs_fixtures import isolated_settings, new_prefix
from tests.redis_server import RedisServer
from tests.waiting import wait_for


@pytest.fixture(params=[True, False], ids=["appendonly", "no-persistence"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    with RedisServer(workdir=tmp_path / "redis", persistent=request.param) as running:
        yield running


@pytest.fixture()
def chat(server: RedisServer, tmp_path: Path) -> Iterator[FakeChat]:
    """A channel on the throwaway server whose event loop runs in a thread, as a runner's does."""
    settings = isolated_settings(
        prefix=new_prefix(), redis_url=server.url, data_dir=tmp_path / "data"
    )
    client = redis_lib.Redis.from_url(server.url)
    conversation = FakeChat(settings=settings, redis=client, worker=False)
    stop = threading.Event()
    loop = threading.Thread(
        target=conversation.service.pump_until, args=(stop,), kwargs={"block_ms": 100}
    )
    loop.start()
    yield conversation
    stop.set()
    loop.join(10)
    assert not loop.is_alive()
    client.close()


def _queued(chat: FakeChat, text: str) -> tuple[str, list]:
    reply = chat.command(text)
    match = re.search(r"Queued job `([^`]+)`", reply.text)
    assert match and reply.thread is not None, reply.text
    wait_for(
        lambda: any("Queued" in m.text for m in chat.thread(reply.thread)[1:]),
        what="the job's progress message",
    )
    return match.group(1), chat.thread(reply.thread)


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.name.startswith("bot"))


def test_a_redis_restart_is_two_log_lines_and_a_lost_job_is_told(
    server: RedisServer, chat: FakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    job_id, (card, progress) = _queued(chat, "/imagine a red mug --n 1")
    wait_for(lambda: chat.service.followed.follows(job_id), what="the bot to remember the job")

    server.stop()
    wait_for(lambda: chat.service.outage.down, timeout=20, what="the bot to notice")
    server.start()
    wait_for(lambda: chat.service.outage.ended == 1, timeout=20, what="the bot to reconnect")
    # Once a later job's line is shown, the loop has been through its after-outage check.
    _queued(chat, "/imagine a blue cup --n 1")

    thread = chat.thread(card.ref)
    told = [m for m in thread if LOST_MESSAGE.format(job_id=job_id) in m.text]
    if server.persistent:
        assert not told, chat.dump()
        assert chat.service.queue.status(job_id) == "queued"  # kept: a worker will render it
    else:
        assert len(told) == 1 and told[0].ref.thread == card.ref.id, chat.dump()
        # The progress message no longer says it waits in line.
        assert "Stopped" in progress.text and any("Queued" in t for t in progress.history)
        assert job_id not in chat.service.state.open_jobs(chat.adapter.platform)
    assert _lines(caplog, "Redis is unreachable") == 1
    assert _lines(caplog, "Redis answers again") == 1
    assert _lines(caplog, "event pump failed") == 0
