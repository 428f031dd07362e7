"""What the soak relies on, each in isolation: TTLs set in seconds through the ordinary
settings, the job-event stream expiring with the results it reports, and a bot that keeps
reading when the stream expires under it."""

from __future__ import annotations

import threading

import pytest
import redis as redis_lib

from bot.settings import BotSettings
from engine.events import EventStream, JobEvent
from engine.settings import Settings


def test_state_and_ledger_ttls_can_be_set_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PROOFROOM_STATE_TTL_S`` and ``PROOFROOM_LEDGER_TTL_S`` win over the day settings;
    unset, the days count."""
    assert BotSettings(_env_file=None).state_retention_s == 90 * 86400  # type: ignore[call-arg]
    assert Settings(_env_file=None).ledger_retention_s == 400 * 86400  # type: ignore[call-arg]
    monkeypatch.setenv("PROOFROOM_STATE_TTL_S", "7")
    monkeypatch.setenv("PROOFROOM_LEDGER_TTL_S", "9")
    assert BotSettings(_env_file=None).state_retention_s == 7  # type: ignore[call-arg]
    assert Settings(_env_file=None).ledger_retention_s == 9  # type: ignore[call-arg]


def test_the_event_stream_expires_with_the_results_it_reports(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """Each publish, terminal or not, sets the stream's TTL to ``result_ttl_s``."""
    events = EventStream(redis=redis, settings=settings.model_copy(update={"result_ttl_s": 50}))
    events.publish(JobEvent(job_id="j1", kind="queued"))
    assert 0 < redis.ttl(events.key) <= 50
    redis.persist(events.key)
    assert events.publish_terminal(JobEvent(job_id="j1", kind="done")) is not None
    assert 0 < redis.ttl(events.key) <= 50


def test_a_read_blocked_on_an_expiring_stream_returns_nothing_then_starts_over(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    """The stream vanishes while a reader blocks on it (Redis answers ``UNBLOCKED``): the
    read returns no events instead of raising, and the next read sees what comes next."""
    events = EventStream(redis=redis, settings=settings)
    events.publish(JobEvent(job_id="j1", kind="queued"))
    assert [e.job_id for _, e in events.read(group="g", consumer="c", block_ms=10)] == ["j1"]
    gone = threading.Timer(0.3, lambda: redis.delete(events.key))
    gone.start()
    try:
        assert events.read(group="g", consumer="c", block_ms=5000) == []
    finally:
        gone.cancel()
    assert not redis.exists(events.key)
    events.publish(JobEvent(job_id="j2", kind="queued"))
    assert [e.job_id for _, e in events.read(group="g", consumer="c", block_ms=10)] == ["j2"]
