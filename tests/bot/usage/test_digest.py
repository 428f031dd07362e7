"""The calendar's end-of-week digest carries the ledger's figures for its week, and the
calendar's jobs are attributed to the calendar (it has no person behind it). Fake chat,
real Redis, an embedded worker, a frozen scheduler clock."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.calendars.model import Calendar
from bot.testing.chat import FakeChat
from bot.usage.report import Rates, Totals, money_format
from bot.usage.state import UsageState

MONDAY_0901_BERLIN = datetime(2026, 11, 30, 8, 1, tzinfo=UTC)
FRIDAY_1700_BERLIN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


def test_the_weeks_digest_says_what_its_images_cost(chat: FakeChat, settings, redis) -> None:
    calendars = {
        "mkt": Calendar(
            name="mkt",
            platform="fake",
            channel="C-MKT",
            timezone="Europe/Berlin",
            weeks_of_month={1: {"title": "Focus", "template": "productivity", "variations": 2}},
        )
    }
    now = [MONDAY_0901_BERLIN]
    desk = chat.service.calendars = chat.service.calendar_desk(
        calendars=calendars, clock=lambda: now[0]
    )
    assert desk.tick(force=True) == ["mkt 2026-W49"]
    chat.run_until_idle()
    [thread] = [m for m in chat.adapter.messages.values() if m.text.startswith("\U0001f5d3")]
    images = chat.images(thread.ref)
    chat.react(images[0], "approve", user="U2")
    chat.react(images[1], "reject", user="U2")

    now[0] = FRIDAY_1700_BERLIN
    assert desk.tick(force=True) == ["mkt 2026-W49 digest"]
    [digest] = [m for m in chat.thread(thread.ref) if m.text.startswith("\U0001f4ca")]

    ledger = UsageState(redis=redis, settings=settings)
    [job_id] = {chat.service.state.image(image.ref).job_id for image in images}
    entry = ledger.entry(job_id)
    assert entry is not None
    assert entry.record.user == "calendar:mkt" and entry.record.calendar == "mkt"
    totals = Totals()
    totals.add(entry)
    rates = Rates.from_settings(settings)
    money = money_format(rates.currency)
    assert f"Usage: 2 images in {totals.gpu_s:.1f}s of GPU time" in digest.text
    assert f"{money(totals.cost_per_image(rates))} per image" in digest.text
    assert f"{money(totals.cost_per_approved(rates))} per approved image" in digest.text
    assert "approval rate 50%" in digest.text
