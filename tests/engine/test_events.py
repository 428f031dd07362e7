"""The job event stream: order, one terminal event per job, consumer groups that survive
restarts. Runs on the real Redis and on the embedded in-memory server."""

from __future__ import annotations

import time

import pytest

from engine.events import EventStream, JobEvent
from engine.spec import ImageResult, JobResult
from tests.engine.jobs_fixtures import settings_and_redis, wipe


@pytest.fixture(params=["redis", "fakeredis"])
def stream(request, tmp_path, key_prefix):
    settings, client = settings_and_redis(request, tmp_path=tmp_path, prefix=key_prefix)
    yield EventStream(redis=client, settings=settings)
    wipe(client, key_prefix)


def _result(job_id: str) -> JobResult:
    image = ImageResult(
        index=0, seed=1, artifact_id="20250101-0123456789abcdef.png", width=64, height=64
    )
    return JobResult(job_id=job_id, model="tiny", images=[image], load_s=0.0)


def test_events_round_trip_in_order(stream: EventStream) -> None:
    origin = {"platform": "slack", "channel": "C1", "thread": "171.2"}
    stream.publish(JobEvent(job_id="j1", kind="queued", position=2, origin=origin))
    stream.publish(JobEvent(job_id="j1", kind="started", origin=origin))
    stream.publish(JobEvent(job_id="j1", kind="progress", step=1, total=2, origin=origin))
    stream.publish_terminal(JobEvent(job_id="j1", kind="done", result=_result("j1"), origin=origin))

    got = [e for _, e in stream.read(group="bot", consumer="c1", block_ms=10)]

    assert [e.kind for e in got] == ["queued", "started", "progress", "done"]
    assert got[0].position == 2 and got[2].step == 1 and got[2].total == 2
    assert got[3].result == _result("j1")
    assert all(e.origin == origin for e in got)
    assert got[-1].terminal and not got[0].terminal


def test_a_job_ends_once(stream: EventStream) -> None:
    first = stream.publish_terminal(JobEvent(job_id="j1", kind="done", result=_result("j1")))
    again = stream.publish_terminal(JobEvent(job_id="j1", kind="done", result=_result("j1")))
    late_cancel = stream.publish_terminal(JobEvent(job_id="j1", kind="cancelled"))

    assert first is not None and again is None and late_cancel is None
    assert [e.kind for e in stream.history("j1")] == ["done"]
    assert stream.terminal_kind("j1") == "done"
    assert stream.terminal_kind("j2") is None


def test_only_terminal_events_take_the_guard(stream: EventStream) -> None:
    with pytest.raises(ValueError, match="not a terminal event"):
        stream.publish_terminal(JobEvent(job_id="j1", kind="progress", step=1, total=2))


def test_a_new_group_sees_events_published_before_it_existed(stream: EventStream) -> None:
    # A bot that starts (and creates its group) after a job already finished still hears of it.
    stream.publish(JobEvent(job_id="j1", kind="queued", position=1))
    stream.publish_terminal(JobEvent(job_id="j1", kind="failed", message="no", error_kind="x"))

    got = [e.kind for _, e in stream.read(group="late-bot", consumer="c1", block_ms=10)]

    assert got == ["queued", "failed"]


def test_restarted_consumer_gets_what_it_did_not_ack_then_new_events(stream: EventStream) -> None:
    for kind in ("queued", "started"):
        stream.publish(JobEvent(job_id="j1", kind=kind))
    before = stream.read(group="bot", consumer="c1", block_ms=10)
    stream.ack(group="bot", entry_id=before[0][0])  # handled "queued", crashed on "started"
    stream.publish_terminal(JobEvent(job_id="j1", kind="done", result=_result("j1")))

    restarted = EventStream(redis=stream.redis, settings=stream.settings)
    replay = restarted.read(group="bot", consumer="c1", block_ms=10)
    new = restarted.read(group="bot", consumer="c1", block_ms=10)

    assert [e.kind for _, e in replay] == ["started"]
    assert [e.kind for _, e in new] == ["done"]
    for entry_id, _ in replay + new:
        restarted.ack(group="bot", entry_id=entry_id)
    again = EventStream(redis=stream.redis, settings=stream.settings)
    assert again.read(group="bot", consumer="c1", block_ms=10) == []


def test_what_a_vanished_consumer_left_unacked_goes_to_the_next_reader(stream) -> None:
    for job_id in ("j1", "j2", "j3"):
        stream.publish(JobEvent(job_id=job_id, kind="queued"))
    read = stream.read(group="bot", consumer="old-name", block_ms=10)
    stream.ack(group="bot", entry_id=read[0][0])  # handled j1, then went away for good

    # A bot restarted under a new name: the entries are not idle long enough to take yet
    # (the old reader might still be handling them), so nothing is delivered twice.
    soon = EventStream(redis=stream.redis, settings=stream.settings)
    assert soon.read(group="bot", consumer="new-name", block_ms=10) == []
    # Once they are, the next reader takes them over, replays them, and owns them.
    idle = stream.settings.model_copy(update={"event_claim_idle_s": 0})
    later = EventStream(redis=stream.redis, settings=idle)
    replay = later.read(group="bot", consumer="new-name", block_ms=10)
    assert [e.job_id for _, e in replay] == ["j2", "j3"]
    for entry_id, _ in replay:
        later.ack(group="bot", entry_id=entry_id)
    assert stream.redis.xpending(stream.key, "bot")["pending"] == 0


def test_a_running_reader_takes_over_what_another_left_once_it_is_idle(stream) -> None:
    idle = stream.settings.model_copy(update={"event_claim_idle_s": 0.3})
    running = EventStream(redis=stream.redis, settings=idle)
    assert running.read(group="bot", consumer="a", block_ms=10) == []  # started, nothing yet
    stream.publish(JobEvent(job_id="j1", kind="queued"))
    [(entry_id, _)] = stream.read(group="bot", consumer="b", block_ms=10)  # b reads, then dies
    assert running.read(group="bot", consumer="a", block_ms=10) == []  # b may still be at it
    time.sleep(0.4)
    replay = running.read(group="bot", consumer="a", block_ms=10)
    assert [(i, e.job_id) for i, e in replay] == [(entry_id, "j1")]


def test_groups_are_independent(stream: EventStream) -> None:
    stream.publish(JobEvent(job_id="j1", kind="queued"))
    slack = stream.read(group="slack", consumer="c1", block_ms=10)
    discord = stream.read(group="discord", consumer="c1", block_ms=10)

    assert len(slack) == len(discord) == 1
    assert stream.read(group="slack", consumer="c1", block_ms=10) == []


def test_an_unacked_event_is_not_redelivered_to_a_running_consumer(stream: EventStream) -> None:
    # Only a restart replays pending entries; a live consumer that skips one does not loop on it.
    stream.publish(JobEvent(job_id="j1", kind="queued"))
    assert len(stream.read(group="bot", consumer="c1", block_ms=10)) == 1
    assert stream.read(group="bot", consumer="c1", block_ms=10) == []


def test_the_stream_is_trimmed(stream: EventStream) -> None:
    stream.settings = stream.settings.model_copy(update={"event_stream_maxlen": 10})
    for step in range(500):
        stream.publish(JobEvent(job_id="j1", kind="progress", step=step, total=500))

    # MAXLEN ~ trims whole macro nodes, so the length lands near, not at, the limit.
    assert stream.redis.xlen(stream.key) < 500


def test_a_consumer_survives_the_stream_being_deleted(stream: EventStream) -> None:
    stream.publish(JobEvent(job_id="j1", kind="queued"))
    assert len(stream.read(group="bot", consumer="c1", block_ms=10)) == 1
    stream.redis.delete(stream.key)  # e.g. FLUSHDB on a dev box
    stream.publish(JobEvent(job_id="j2", kind="queued"))

    assert [e.job_id for _, e in stream.read(group="bot", consumer="c1", block_ms=10)] == ["j2"]
