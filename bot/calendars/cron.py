"""A small cron expression (``minute hour day-of-month month day-of-week``) in a time zone.

Enough for content calendars ("0 9 * * MON": Mondays at 09:00): ``*``, numbers,
lists, ranges, steps and English day/month names. Times are computed in the
schedule's own zone so 09:00 stays 09:00 across daylight-saving changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("weekday", 0, 7, _DAYS),
)
_SEARCH_LIMIT = timedelta(days=400)


@dataclass(frozen=True)
class Cron:
    """A parsed schedule; build with :func:`parse_cron`."""

    expression: str
    zone: ZoneInfo
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday, as in cron

    def matches(self, moment: datetime) -> bool:
        """Whether ``moment`` (any zone) falls on a scheduled minute."""
        local = moment.astimezone(self.zone)
        return (
            local.minute in self.minutes
            and local.hour in self.hours
            and local.day in self.days
            and local.month in self.months
            and (local.isoweekday() % 7) in self.weekdays
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first scheduled minute strictly after ``moment``."""
        probe = moment.astimezone(self.zone).replace(second=0, microsecond=0)
        return self._walk(probe + timedelta(minutes=1), timedelta(minutes=1), moment)

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest scheduled minute at or before ``moment``."""
        probe = moment.astimezone(self.zone).replace(second=0, microsecond=0)
        return self._walk(probe, timedelta(minutes=-1), moment)

    def _walk(self, probe: datetime, step: timedelta, origin: datetime) -> datetime:
        # Minute steps are plenty fast for weekly schedules once whole non-matching
        # days are skipped.
        while abs(probe - origin) < _SEARCH_LIMIT:
            if not self._day_matches(probe):
                if step > timedelta(0):
                    probe = (probe + timedelta(days=1)).replace(hour=0, minute=0)
                else:
                    probe = probe.replace(hour=0, minute=0) - timedelta(minutes=1)
                continue
            if self.matches(probe):
                return probe
            probe = (probe + step).astimezone(self.zone)
        raise ValueError(f"cron `{self.expression}` never fires")

    def _day_matches(self, local: datetime) -> bool:
        return (
            local.day in self.days
            and local.month in self.months
            and (local.isoweekday() % 7) in self.weekdays
        )


def parse_cron(expression: str, *, timezone: str = "UTC") -> Cron:
    """Parse ``expression``; ``ValueError`` with a readable reason when it is malformed."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone `{timezone}` (use a name like Europe/Berlin)"
        ) from None
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            f"cron `{expression}` needs 5 fields: minute hour day month weekday (e.g. 0 9 * * MON)"
        )
    sets = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return Cron(expression, zone, sets[0], sets[1], sets[2], sets[3], weekdays)


def _parse_field(
    text: str, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.upper().split(","):
        base, _, step_text = item.partition("/")
        digits = step_text.isascii() and step_text.isdigit()  # not `²`: int() refuses it
        step = int(step_text) if digits else 1
        if (step_text and not digits) or step == 0:
            raise ValueError(f"cron {name}: bad step `{step_text}`")
        if base == "*":
            start, end = low, high
        else:
            first, _, last = base.partition("-")
            start = _value(first, name, names)
            end = _value(last, name, names) if last else (high if step_text else start)
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ValueError(f"cron {name}: `{item}` is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(token: str, name: str, names: dict[str, int]) -> int:
    if token in names:
        return names[token]
    if token.isascii() and token.isdigit():
        return int(token)
    raise ValueError(f"cron {name}: `{token}` is not a number or name")
