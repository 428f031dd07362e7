"""A patient Redis client (``engine.outage``) on a throwaway ``redis-server`` that restarts:
commands wait and go on, the outage is two log lines whatever the number of threads, a job's
end is published once, and what may be skipped is skipped at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from engine.events import EventStream, JobEvent
from engine.outage import Outage, patient_redis
from tests.engine.jobs_fixtures import isolated_settings, new_prefix
from tests.redis_server import RedisServer
from tests.waiting import wait_for


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(workdir=tmp_path, persistent=True) as running:
        yield running


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_commands_wait_out_a_restart_and_the_outage_is_two_log_lines(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    outage = Outage(name="test")
    client = patient_redis(server.url, outage=outage)
    finished = threading.Event()
    written = [0, 0, 0]

    def writer(n: int) -> None:
        while not finished.is_set():
            client.set(f"w{n}:{written[n]}", 1)  # idempotent: a retried SET changes nothing
            written[n] += 1

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in writers:
        thread.start()
    wait_for(lambda: min(written) > 10, what="the writers to get going")
    server.stop()
    wait_for(lambda: outage.down, what="a writer to find Redis away")
    server.start()
    after = list(written)
    wait_for(
        lambda: all(w > a + 10 for w, a in zip(written, after, strict=True)),
        what="every writer to go on",
    )
    finished.set()
    for thread in writers:
        thread.join(10)

    assert not any(thread.is_alive() for thread in writers)
    for n, count in enumerate(written):  # nothing was lost (append-only, fsync always)
        assert all(client.mget([f"w{n}:{k}" for k in range(count)]))
    assert outage.ended == 1 and not outage.down
    assert _lines(caplog, "test: Redis is unreachable") == 1
    assert _lines(caplog, "test: Redis answers again") == 1
    client.close()


def test_a_skippable_action_is_skipped_at_once_and_a_stopping_process_stops_waiting(
    server: RedisServer,
) -> None:
    outage = Outage(name="test")
    client = patient_redis(server.url, outage=outage)
    client.set("cancel", "1")
    server.stop()

    assert outage.attempt(lambda: client.exists("cancel"), default=False) is False
    assert outage.down  # the attempt found Redis away: later ones do not even try
    assert outage.attempt(lambda: client.exists("cancel"), default=None) is None

    outage.give_up()
    with pytest.raises(redis_lib.ConnectionError):
        client.get("cancel")


def test_a_jobs_end_published_while_redis_restarts_is_published_once(
    server: RedisServer, tmp_path: Path
) -> None:
    settings = isolated_settings(prefix=new_prefix(), redis_url=server.url, data_dir=tmp_path)
    outage = Outage(name="test")
    events = EventStream(redis=patient_redis(server.url, outage=outage), settings=settings)
    events.publish(JobEvent(job_id="j1", kind="started"))
    server.stop()

    published: list[str | None] = []
    publisher = threading.Thread(
        target=lambda: published.append(events.publish_terminal(JobEvent(job_id="j1", kind="done")))
    )
    publisher.start()
    wait_for(lambda: outage.down, what="the publisher to find Redis away")
    server.start()
    publisher.join(30)

    assert published and published[0] is not None
    assert events.publish_terminal(JobEvent(job_id="j1", kind="failed")) is None
    assert [e.kind for e in events.history("j1")] == ["started", "done"]
