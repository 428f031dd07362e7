"""Content-calendar threads through the fake chat with a frozen clock: the Monday run
posts once (twice triggered, two schedulers), a missed run posts once on start, and the
digest counts match the votes cast."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.calendars.desk import CalendarDesk
from bot.calendars.model import Calendar
from bot.testing.chat import FakeChat

MONDAY_0901_BERLIN = datetime(2026, 11, 30, 8, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def calendar() -> dict[str, Calendar]:
    return {
        "mkt": Calendar(
            name="mkt",
            description="weekly social images",
            platform="fake",
            channel="C-MKT",
            schedule="0 9 * * MON",
            timezone="Europe/Berlin",
            digest="0 17 * * FRI",
            weeks_of_month={
                1: {"title": "Productivity", "template": "productivity", "variations": 3}
            },
        )
    }


def desk(chat: FakeChat, calendars, clock) -> CalendarDesk:
    # The desk a second bot process would have: same Redis, its own objects.
    return chat.service.calendar_desk(calendars=calendars, clock=clock)


def week_threads(chat: FakeChat) -> list:
    return [m for m in chat.adapter.messages.values() if m.text.startswith("\U0001f5d3")]


def test_monday_run_posts_once_then_digest_counts_votes(chat: FakeChat, calendar) -> None:
    clock = Clock(MONDAY_0901_BERLIN)
    chat.service.calendars = first = desk(chat, calendar, clock)
    second = desk(chat, calendar, clock)
    assert first.tick(force=True) == ["mkt 2026-W49"]
    assert first.tick(force=True) == []
    assert second.tick(force=True) == []
    threads = week_threads(chat)
    assert len(threads) == 1
    assert threads[0].text.startswith("\U0001f5d3\ufe0f Week 49 \u00b7 Productivity")
    assert threads[0].ref.channel == "C-MKT"

    chat.run_until_idle()
    images = chat.images(threads[0].ref)
    assert len(images) == 3
    chat.react(images[0], "approve", user="U2")
    chat.react(images[1], "approve", user="U3")
    chat.react(images[2], "reject", user="U2")

    clock.now = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # Friday 17:00 Berlin
    assert first.tick(force=True) == ["mkt 2026-W49 digest"]
    assert second.tick(force=True) == []
    digest = [m for m in chat.thread(threads[0].ref) if m.text.startswith("\U0001f4ca")]
    assert len(digest) == 1
    assert (
        "Week 49 \u00b7 Productivity: 2 approved, 1 rejected, 0 waiting for review"
        in digest[0].text
    )
    assert digest[0].text.count("\u2022 image") == 2
    assert chat.command("/imagine calendar digest mkt").text.startswith(
        "Posted the digest of `mkt`"
    )


def test_a_run_missed_while_down_posts_once_on_start(chat: FakeChat, calendar) -> None:
    clock = Clock(datetime(2026, 12, 1, 13, 0, tzinfo=UTC))  # Tuesday: Monday 09:00 was missed
    chat.service.calendars = desk(chat, calendar, clock)
    chat.pump(block_ms=10)  # the first pump of a starting bot ticks the schedule
    assert len(week_threads(chat)) == 1
    chat.restart()
    chat.service.calendars = desk(chat, calendar, clock)
    chat.pump(block_ms=10)
    assert len(week_threads(chat)) == 1
    chat.run_until_idle()


def test_calendar_command_lists_next_runs(chat: FakeChat, calendar) -> None:
    chat.service.calendars = desk(chat, calendar, Clock(MONDAY_0901_BERLIN))
    text = chat.command("/imagine calendar").text
    assert text.startswith("Next calendar runs:")
    assert "`mkt`: Week 50 \u00b7 Productivity (3 images), Mon 07 Dec 09:00 CET in <#C-MKT>" in text
    assert "There is no calendar `nope`" in chat.command("/imagine calendar digest nope").text
    reply = chat.command("/imagine calendar with flowers --n 1 --steps 2")
    assert reply.text.startswith("Queued job")
    chat.run_until_idle()


def test_a_calendar_naming_an_unknown_template_is_refused_once_at_start(
    chat: FakeChat, calendar, caplog
) -> None:
    broken = Calendar.model_validate(
        calendar["mkt"].model_dump()
        | {"name": "typo", "weeks_of_month": {1: {"title": "X", "template": "productivty"}}}
    )
    started = desk(chat, {**calendar, "typo": broken}, Clock(MONDAY_0901_BERLIN))
    assert list(started.calendars) == ["mkt"]
    assert "calendar typo will not post" in caplog.text and "productivty" in caplog.text
    assert started.tick(force=True) == ["mkt 2026-W49"]  # the good one still posts
