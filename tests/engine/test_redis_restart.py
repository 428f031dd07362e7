"""Redis restarts in the middle of a job, under a real ``proofroom worker`` process rendering the
tiny model and the bot's event loop, on a throwaway ``redis-server`` of the test's own. The
worker keeps running and serving. With append-only persistence the job's image is posted once;
without persistence Redis comes back empty and the requester is told in the thread."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib

from bot.jobs.followed import LOST_MESSAGE
from bot.testing.chat import FakeChat, FakeMessage
from engine.events import EventStream
from tests.engine.jobs_fixtures import WorkerProcess, isolated_settings, new_prefix, wait_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

STEPS, RESTART_AT = 20, 12
OUTAGE_S = 1.0  # Redis stays away this long after the worker and the bot noticed


class System:
    """A throwaway Redis, a worker process on it and a chat whose event loop runs in a thread."""

    def __init__(self, *, server: RedisServer, worker: WorkerProcess, chat: FakeChat) -> None:
        self.server, self.worker, self.chat = server, worker, chat
        self.events = EventStream(redis=chat.redis, settings=chat.settings)
        self._log_start = 0
        self._log_start = len(self.worker_log())  # the worker serves the whole module

    def worker_log(self) -> str:
        """What the worker logged since this test began."""
        return self.worker.log_tail(lines=1_000_000)[self._log_start :]

    def step(self, job_id: str) -> int:
        """The last step of ``job_id`` reported so far."""
        steps = [e.step or 0 for e in self.events.history(job_id) if e.kind == "progress"]
        return max(steps, default=0)

    def command(self, text: str) -> tuple[str, FakeMessage]:
        """Run ``/imagine``; the job id and the card that opened its thread."""
        reply = self.chat.command(text)
        match = re.search(r"Queued job `([^`]+)`", reply.text)
        assert match and reply.thread is not None, reply.text
        return match.group(1), self.chat.thread(reply.thread)[0]


@pytest.fixture(scope="module")
def worker_on_redis(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, WorkerProcess]]:
    """One throwaway Redis (append-only at first) and one worker for the module: a worker
    takes most of the time here to start."""
    root = tmp_path_factory.mktemp("restart")
    (root / "redis").mkdir()
    with RedisServer(workdir=root / "redis", persistent=True) as server:
        settings = isolated_settings(
            prefix=new_prefix(), redis_url=server.url, data_dir=root / "data"
        )
        worker = WorkerProcess(settings, log_path=root / "worker.log")
        client = redis_lib.Redis.from_url(server.url)
        try:
            worker.wait_ready(client)
            yield server, worker
        finally:
            worker.stop()
            client.close()


# In this order: the append-only restart first, then one without persistence (it comes back
# empty, and stays so for whatever follows).
@pytest.fixture(params=[True, False], ids=["appendonly", "no-persistence"])
def system(
    request: pytest.FixtureRequest, worker_on_redis: tuple[RedisServer, WorkerProcess]
) -> Iterator[System]:
    server, worker = worker_on_redis
    server.persistent = request.param  # how it comes back from the restart of the test
    client = redis_lib.Redis.from_url(server.url)
    chat = FakeChat(settings=worker.settings, redis=client, worker=False)
    stop = threading.Event()
    loop = threading.Thread(target=chat.service.pump_until, args=(stop,), kwargs={"block_ms": 100})
    loop.start()
    try:
        yield System(server=server, worker=worker, chat=chat)
    finally:
        stop.set()
        loop.join(10)
        client.close()


def test_a_redis_restart_mid_job_keeps_the_worker_and_ends_the_job_once(system: System) -> None:
    chat, worker, server = system.chat, system.worker, system.server
    job_id, card = system.command(f"/imagine a red mug on a table --n 1 --steps {STEPS}")
    wait_for(lambda: chat.service.followed.follows(job_id), what="the bot to follow the job")
    wait_for(
        lambda: system.step(job_id) >= RESTART_AT,
        timeout=60,
        interval=0.05,
        what=f"step {RESTART_AT} of {STEPS}",
    )
    assert system.events.terminal_kind(job_id) is None  # mid-job

    server.stop()
    wait_for(
        # The worker says so; before this was fixed, it died of it.
        lambda: (
            chat.service.outage.down
            and ("Redis is unreachable" in system.worker_log() or worker.proc.poll() is not None)
        ),
        timeout=20,
        what="the bot and the worker to run into the outage",
    )
    time.sleep(OUTAGE_S)
    server.start()  # with append-only persistence, or empty
    assert worker.proc.poll() is None, system.worker_log()  # it rode the outage out

    told = LOST_MESSAGE.format(job_id=job_id)
    if server.persistent:
        wait_for(lambda: chat.images(card.ref), timeout=60, what="the job's image")
    else:
        wait_for(
            lambda: any(told in m.text for m in chat.thread(card.ref)),
            timeout=60,
            what="the requester to be told",
        )
    # Still serving: a new job is rendered and posted.
    _, second = system.command("/imagine a blue cup --n 1 --steps 2")
    wait_for(lambda: chat.images(second.ref), timeout=60, what="a later job's image")

    log = system.worker_log()
    assert worker.proc.poll() is None, log
    assert "unhandled exception" not in log and "Traceback" not in log, log
    assert log.count("Redis is unreachable") == 1, log  # one line as it starts
    assert log.count("Redis answers again") == 1, log  # and one as it ends
    thread = chat.thread(card.ref)
    if server.persistent:
        assert len(chat.images(card.ref)) == 1, chat.dump()  # posted once
        assert [e.kind for e in system.events.history(job_id)].count("done") == 1
        assert not any(told in m.text for m in thread)
    else:
        assert not chat.images(card.ref), chat.dump()
        assert sum(told in m.text for m in thread) == 1, chat.dump()
        assert log.count("dropping it") == 1, log
