"""Ranges of time for usage reports, counted in the configured time zone
(``PROOFROOM_TIMEZONE``): this week (from Monday 00:00), this month, or given days."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Period = Literal["week", "month"]
PERIODS: tuple[Period, ...] = get_args(Period)


def period_range(period: Period, *, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of the week or month so far that ``now`` is in: from its first
    midnight in ``zone`` to ``now``."""
    local = now.astimezone(zone)
    first = local.date() - timedelta(days=local.weekday())
    if period == "month":
        first = local.date().replace(day=1)
    return start_of(first, zone), local


def start_of(day: date, zone: ZoneInfo) -> datetime:
    """Midnight at the start of ``day`` in ``zone``."""
    return datetime.combine(day, time(0), tzinfo=zone)


def parse_day(text: str, *, zone: ZoneInfo) -> datetime:
    """``YYYY-MM-DD`` as the midnight it starts with in ``zone``; a sentence on error."""
    try:
        return start_of(date.fromisoformat(text), zone)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a day; write it as YYYY-MM-DD, e.g. 2026-11-01"
        ) from None


def days_between(start: datetime, end: datetime, *, zone: ZoneInfo) -> list[date]:
    """Every local day from ``start``'s to ``end``'s (the last only when ``end`` is past
    its midnight)."""
    first = start.astimezone(zone).date()
    last_moment = end.astimezone(zone)
    last = last_moment.date()
    if last_moment == start_of(last, zone) and last > first:
        last -= timedelta(days=1)  # an end at midnight is exclusive
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def label(start: datetime, end: datetime, *, zone: ZoneInfo) -> str:
    """``2026-11-30 to 2026-12-03 (UTC)``."""
    days = days_between(start, end, zone=zone)
    return f"{days[0]} to {days[-1]} ({zone.key})"
