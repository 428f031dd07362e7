"""The caps on a user's interactive jobs in flight and in line, the command rate limit, and
a content calendar's week over its bulk quota (refused whole, said once). No worker: the
accepted jobs stay in line, which is what the caps count."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine

from bot.calendars.model import Calendar
from tests.bot.conftest import queued_jobs

NOON_37 = datetime(2026, 12, 3, 12, 0, 37, tzinfo=UTC)
MONDAY_0901_BERLIN = datetime(2026, 11, 30, 8, 1, tzinfo=UTC)


def test_jobs_in_flight_are_capped_per_user_and_a_cancel_frees_a_place(quiet_chat, settings, redis):
    chat = quiet_chat(quotas={"concurrent_jobs": 2})
    first = chat.command("a fox --n 1").text
    assert chat.command("a fox --n 1").text.startswith("Queued job")
    refused = chat.command("a fox --n 1").text
    assert refused.startswith("You have 2 jobs waiting or rendering, and 2 at once is the most")
    assert chat.command("a fox --n 1", user="U2").text.startswith("Queued job")
    assert queued_jobs(settings, redis) == 3
    assert chat.command(f"cancel {first.split('`')[1]}").text
    assert chat.command("a fox --n 1").text.startswith("Queued job")


def test_queued_interactive_jobs_are_capped(quiet_chat):
    chat = quiet_chat(quotas={"queued_interactive_jobs": 1})
    assert chat.command("a fox --n 1").text.startswith("Queued job")
    assert chat.command("a fox --n 1").text.startswith("You have 1 job waiting in line")


def test_commands_over_the_rate_limit_are_refused_until_the_minute_ends(quiet_chat):
    chat = quiet_chat(quotas={"commands_per_minute": 3}, admin_ids=frozenset({"UADMIN"}))
    with time_machine.travel(NOON_37, tick=False):
        for _ in range(3):
            assert "/imagine" in chat.command("help").text
        assert chat.command("help").text == (
            "You have sent 3 commands this minute, the most allowed; nothing was done. "
            "Try again in 23 s."
        )
        assert "/imagine" in chat.command("help", user="U2").text
        for _ in range(5):
            assert "/imagine" in chat.command("help", user="UADMIN").text
    with time_machine.travel(datetime(2026, 12, 3, 12, 1, 0, tzinfo=UTC), tick=False):
        assert "/imagine" in chat.command("help").text


def test_a_calendar_week_over_its_bulk_quota_is_not_posted_and_said_once(
    quiet_chat, settings, redis
):
    chat = quiet_chat(quotas={"bulk_images_per_day": 2})
    calendars = {
        "mkt": Calendar(
            name="mkt",
            platform="fake",
            channel="C-MKT",
            schedule="0 9 * * MON",
            timezone="Europe/Berlin",
            weeks_of_month={
                1: {"title": "Productivity", "template": "productivity", "variations": 3}
            },
        )
    }
    desk = chat.service.calendar_desk(calendars=calendars, clock=lambda: MONDAY_0901_BERLIN)
    with time_machine.travel(MONDAY_0901_BERLIN, tick=False):
        assert desk.tick(force=True) == []
        assert desk.tick(force=True) == []
    said = [m.text for m in chat.adapter.messages.values()]
    assert len(said) == 1, said
    assert said[0].startswith("\U0001f5d3\ufe0f Week 49")
    assert "The content calendars have used 0 of their 2 bulk images for today" in said[0]
    assert "needs 3 more" in said[0]
    assert queued_jobs(settings, redis) == 0
