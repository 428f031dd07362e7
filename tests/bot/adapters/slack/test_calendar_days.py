"""Content calendars on the days that once broke CI: a bot started on a Monday at 10:00, a
Wednesday or a Sunday (Europe/Berlin) posts a shipped example only once its channel is set.

The clock is frozen with time-machine; nothing here depends on today's date. Only these
calendar tests read the shipped calendars (``templates/calendars``); every other test's bot
reads an empty calendar folder (``tests/conftest.py``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import time_machine

from bot.settings import BotSettings
from engine.settings import REPO_ROOT, Settings
from tests.bot.adapters.slack.fake_slack import FakeSlack

SHIPPED = REPO_ROOT / "templates" / "calendars"
# Week 49 of 2026: the marketing example's Monday 09:00 run, and its 72-hour catch-up window
# (until Thursday 09:00), cover the first two; Sunday is past the window.
DAYS = {
    "monday-10:00": (datetime(2026, 11, 30, 9, 0, tzinfo=UTC), ["marketing 2026-W49"]),
    "wednesday": (datetime(2026, 12, 2, 11, 0, tzinfo=UTC), ["marketing 2026-W49"]),
    "sunday": (datetime(2026, 12, 6, 11, 0, tzinfo=UTC), []),
}


def posts(fake: FakeSlack) -> list[dict]:
    return [call.args for call in fake.calls_to("chat.postMessage")]


@pytest.mark.parametrize("day", DAYS)
def test_a_bot_in_tests_reads_no_shipped_calendar(
    make_slack, fake_slack: FakeSlack, day: str
) -> None:
    now, _ = DAYS[day]
    with time_machine.travel(now, tick=False):
        desk = make_slack().runtime.service.calendars
        assert desk.tick(force=True) == []
    assert desk.calendars == {}
    assert posts(fake_slack) == []


@pytest.mark.parametrize("day", DAYS)
def test_a_shipped_calendar_without_a_channel_posts_nothing_and_says_why(
    make_slack, fake_slack: FakeSlack, day: str, caplog: pytest.LogCaptureFixture
) -> None:
    now, _ = DAYS[day]
    shipped = BotSettings(_env_file=None, calendars_dir=SHIPPED)  # type: ignore[call-arg]
    with caplog.at_level(logging.INFO, logger="bot"), time_machine.travel(now, tick=False):
        service = make_slack(bot_settings=shipped).runtime.service
        assert service.calendars.tick(force=True) == []
    assert posts(fake_slack) == []
    idle = [r.getMessage() for r in caplog.records if "posts nothing" in r.getMessage()]
    assert idle == [
        "calendar marketing posts nothing: no channel is set: set "
        "PROOFROOM_CALENDAR_CHANNELS__MARKETING to a channel id, or `channel:` in marketing.yaml"
    ]
    # /imagine calendar tells the team the same.
    assert "`marketing` posts nothing: no channel is set" in service.calendars.next_runs_text()


@pytest.mark.parametrize("day", DAYS)
def test_a_shipped_calendar_posts_its_week_once_its_channel_is_set(
    make_slack,
    fake_slack: FakeSlack,
    settings: Settings,
    day: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now, expected = DAYS[day]
    monkeypatch.setenv("PROOFROOM_CALENDAR_CHANNELS__MARKETING", "CMARKETING")
    shipped = BotSettings(_env_file=None, calendars_dir=SHIPPED)  # type: ignore[call-arg]
    with time_machine.travel(now, tick=False):
        desk = make_slack(bot_settings=shipped).runtime.service.calendars
        assert desk.tick(force=True) == expected
        assert desk.tick(force=True) == []  # once per week
    threads = [p for p in posts(fake_slack) if p["text"].startswith("\U0001f5d3")]
    assert [(p["channel"], p["text"].split(" \u00b7 ")[0]) for p in threads] == [
        ("CMARKETING", "\U0001f5d3\ufe0f Week 49") for _ in expected
    ]
