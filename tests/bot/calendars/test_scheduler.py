"""Calendar runs happen once per week, whatever the number of triggers or schedulers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.calendars.model import Calendar, WeekRun
from bot.calendars.scheduler import CalendarScheduler
from bot.calendars.state import CalendarState

CAL = Calendar(
    name="mkt",
    channel="C1",
    schedule="0 9 * * MON",
    timezone="Europe/Berlin",
    digest="0 17 * * FRI",
    catch_up_hours=72,
    weeks_of_month={1: {"title": "Productivity", "template": "productivity"}},
)


class FrozenClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make(redis, key_prefix, clock, posts, digests=None):
    return CalendarScheduler(
        calendars={"mkt": CAL},
        state=CalendarState(redis=redis, key_prefix=key_prefix, ttl_s=3600),
        post_week=posts.append,
        post_digest=(digests.append if digests is not None else None),
        clock=clock,
    )


def test_monday_run_posts_once_across_triggers_and_schedulers(redis, key_prefix) -> None:
    clock = FrozenClock(datetime(2026, 11, 30, 8, 0, 30, tzinfo=UTC))  # 09:00:30 Berlin
    posts: list[WeekRun] = []
    first, second = make(redis, key_prefix, clock, posts), make(redis, key_prefix, clock, posts)
    assert first.tick() == ["mkt 2026-W49"]
    assert first.tick() == []
    assert second.tick() == []
    assert [p.title for p in posts] == ["Week 49 · Productivity"]
    assert first.is_posted("mkt", "2026-W49")


def test_before_nine_nothing_this_week_is_due(redis, key_prefix) -> None:
    clock = FrozenClock(datetime(2026, 11, 30, 7, 59, tzinfo=UTC))  # 08:59 Berlin
    posts: list[WeekRun] = []
    # Last week's run is older than the catch-up window? 7 days > 72 h: nothing.
    assert make(redis, key_prefix, clock, posts).tick() == []


def test_missed_run_posts_once_on_start(redis, key_prefix) -> None:
    # The bot was down Monday 09:00 and starts on Tuesday afternoon.
    clock = FrozenClock(datetime(2026, 12, 1, 14, 0, tzinfo=UTC))
    posts: list[WeekRun] = []
    assert make(redis, key_prefix, clock, posts).tick() == ["mkt 2026-W49"]
    clock.now += timedelta(minutes=5)
    assert make(redis, key_prefix, clock, posts).tick() == []  # a restart posts nothing more
    assert len(posts) == 1 and posts[0].due.isoformat().startswith("2026-11-30T09:00")


def test_a_failed_post_is_retried_on_the_next_tick(redis, key_prefix) -> None:
    clock = FrozenClock(datetime(2026, 11, 30, 8, 1, tzinfo=UTC))
    calls: list[WeekRun] = []

    def flaky(run: WeekRun) -> None:
        calls.append(run)
        if len(calls) == 1:
            raise ConnectionError("chat API down")

    scheduler = CalendarScheduler(
        calendars={"mkt": CAL},
        state=CalendarState(redis=redis, key_prefix=key_prefix, ttl_s=3600),
        post_week=flaky,
        clock=clock,
    )
    assert scheduler.tick() == []
    assert scheduler.tick() == ["mkt 2026-W49"]
    assert scheduler.tick() == []
    assert len(calls) == 2


def test_digest_fires_friday_once_and_next_runs_are_listed(redis, key_prefix) -> None:
    clock = FrozenClock(datetime(2026, 12, 4, 16, 5, tzinfo=UTC))  # Friday 17:05 Berlin
    posts: list[WeekRun] = []
    digests: list[WeekRun] = []
    scheduler = make(redis, key_prefix, clock, posts, digests)
    assert "mkt 2026-W49 digest" in scheduler.tick()
    assert scheduler.tick() == []
    assert [d.key for d in digests] == ["2026-W49"]
    upcoming = scheduler.next_runs(count=2)
    assert [r.key for r in upcoming] == ["2026-W50", "2026-W51"]
