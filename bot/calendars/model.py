"""Content calendars: a YAML file per calendar under ``templates/calendars/``.

A calendar names the channel, a weekly schedule (cron in a named time zone) and
the themes: per week of the month (1-5) and, overriding those, per ISO week.
A calendar without a channel (the shipped examples) or with ``enabled: false`` is idle:
it posts nothing, and :attr:`Calendar.idle_reason` says what would make it post. The
channel can also come from the setting ``PROOFROOM_CALENDAR_CHANNELS__<NAME>``, so a
deployment turns an example on without editing the file.
This module is pure: what would be posted for a given week. Posting, and making
a run happen once, is ``bot.calendars.scheduler``'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from bot.calendars.cron import Cron, parse_cron
from engine.catalog import Catalog
from engine.errors import CatalogError


class Theme(BaseModel):
    """What one week posts: a titled theme, a template with variables, N variations."""

    title: str
    template: str
    variables: dict[str, str] = Field(default_factory=dict)
    variations: int = Field(default=4, ge=1)
    model: str | None = None


class Calendar(BaseModel):
    """One calendar file."""

    name: str
    description: str = ""
    platform: str = "slack"
    channel: str | None = None
    enabled: bool = True
    schedule: str = "0 9 * * MON"
    timezone: str = "UTC"
    digest: str | None = "0 17 * * FRI"
    # At most a year: a NaN, an infinity or 1e308 made every scheduler tick raise.
    catch_up_hours: float = Field(default=72.0, gt=0, le=366 * 24, allow_inf_nan=False)
    weeks_of_month: dict[int, Theme] = Field(default_factory=dict)
    iso_weeks: dict[int, Theme] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_themes(self) -> Calendar:
        if not self.weeks_of_month and not self.iso_weeks:
            raise ValueError("a calendar needs themes under weeks_of_month or iso_weeks")
        bad = [w for w in self.weeks_of_month if not 1 <= w <= 5]
        if bad:
            raise ValueError(f"weeks_of_month keys are 1-5; got {bad}")
        _fires_every_year("schedule", parse_cron(self.schedule, timezone=self.timezone))
        if self.digest:
            _fires_every_year("digest", parse_cron(self.digest, timezone=self.timezone))
        return self

    @cached_property
    def cron(self) -> Cron:
        """The posting schedule (parsed once; the scheduler asks every tick)."""
        return parse_cron(self.schedule, timezone=self.timezone)

    @cached_property
    def digest_cron(self) -> Cron | None:
        """The digest schedule, if any."""
        return parse_cron(self.digest, timezone=self.timezone) if self.digest else None

    @property
    def idle_reason(self) -> str | None:
        """Why this calendar posts nothing (None when it runs): a sentence for the log and
        for ``/imagine calendar``."""
        if not self.enabled:
            return f"it is switched off (`enabled: false` in {self.name}.yaml)"
        if not self.channel:
            return (
                f"no channel is set: set PROOFROOM_CALENDAR_CHANNELS__{self.name.upper()} "
                f"to a channel id, or `channel:` in {self.name}.yaml"
            )
        return None

    def theme_for(self, day: date) -> Theme | None:
        """The theme of the week containing ``day``: ISO week first, then week of month
        (week 5 falls back to the last week defined before it).

        As with ISO weeks, a week belongs to the month of its Thursday, so the week of
        Monday 30 November that ends in December is December's first week."""
        iso_week = day.isocalendar().week
        if iso_week in self.iso_weeks:
            return self.iso_weeks[iso_week]
        thursday = day + timedelta(days=3 - day.weekday())
        week = (thursday.day - 1) // 7 + 1
        defined = [w for w in sorted(self.weeks_of_month) if w <= week]
        return self.weeks_of_month[defined[-1]] if defined else None

    def check(self, catalog: Catalog) -> None:
        """Every theme's template, variables and model resolve; ``CatalogError`` if not."""
        for theme in [*self.weeks_of_month.values(), *self.iso_weeks.values()]:
            catalog.template(theme.template).render(theme.variables)
            if theme.model:
                catalog.model(theme.model)


# Weekdays and leap years repeat every 28 years between 1901 and 2099: a schedule that
# fires on some day of each stretch of this many days in those 28 years always does.
_CYCLE_START, _CYCLE_DAYS = date(2001, 1, 1), 28 * 365 + 7
_CYCLE = [
    (day.day, day.month, day.isoweekday() % 7)
    for day in (_CYCLE_START + timedelta(days=n) for n in range(_CYCLE_DAYS))
]
_LONGEST_GAP_DAYS = 366  # the scheduler looks 400 days ahead and back (bot.calendars.cron)


def _fires_every_year(field: str, cron: Cron) -> None:
    """Refuse a schedule that never fires (``0 9 30 2 *``) or skips whole years
    (``0 9 29 2 *``): the scheduler's search would fail on every tick, on some dates only."""
    days, months, weekdays = cron.days, cron.months, cron.weekdays
    hits = [
        n
        for n, (day, month, weekday) in enumerate(_CYCLE)
        if day in days and month in months and weekday in weekdays
    ]
    if not hits:
        raise ValueError(f"{field} `{cron.expression}` never fires: no date matches it")
    gaps = [b - a for a, b in zip(hits, hits[1:], strict=False)]
    gaps.append(hits[0] + _CYCLE_DAYS - hits[-1])
    if max(gaps) > _LONGEST_GAP_DAYS:
        raise ValueError(
            f"{field} `{cron.expression}` goes {max(gaps)} days without firing; a calendar "
            "posts at least once a year (e.g. 0 9 * * MON)"
        )


@dataclass(frozen=True)
class WeekRun:
    """One scheduled run: which calendar, which ISO week, what it posts, and when."""

    calendar: Calendar
    year: int
    week: int
    theme: Theme
    due: datetime

    @property
    def key(self) -> str:
        """``2026-W49``: the week this run covers."""
        return f"{self.year}-W{self.week:02d}"

    @property
    def title(self) -> str:
        """The thread title, e.g. ``Week 49 · Productivity``."""
        return f"Week {self.week} · {self.theme.title}"


def run_for(calendar: Calendar, due: datetime) -> WeekRun | None:
    """The run fired at ``due`` (None when that week has no theme)."""
    local = due.astimezone(calendar.cron.zone)
    theme = calendar.theme_for(local.date())
    if theme is None:
        return None
    iso = local.isocalendar()
    return WeekRun(calendar=calendar, year=iso.year, week=iso.week, theme=theme, due=due)


def run_for_week(calendar: Calendar, week: str) -> WeekRun | None:
    """The run of ISO week ``2026-W49`` (the first scheduled time in that week)."""
    try:
        year_text, week_text = week.upper().split("-W")
        monday = date.fromisocalendar(int(year_text), int(week_text), 1)
    except ValueError:
        raise CatalogError(f"week `{week}` is not an ISO week like 2026-W49") from None
    start = datetime.combine(monday, datetime.min.time(), tzinfo=calendar.cron.zone)
    due = calendar.cron.next_after(start - timedelta(minutes=1))
    return run_for(calendar, due)


def load_calendars(root: Path, *, channels: Mapping[str, str] | None = None) -> dict[str, Calendar]:
    """Read every ``*.yaml`` under ``root`` (``templates/calendars``); name = file stem.
    ``channels`` (calendar name → channel id, from settings) overrides the files' channels."""
    calendars = {}
    channels = {name.lower(): channel for name, channel in (channels or {}).items()}
    for path in sorted(root.glob("*.yaml")):
        try:
            body = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not valid UTF-8 YAML ({exc})") from None
        if not isinstance(body, dict):
            raise ValueError(f"{path}: a calendar is a mapping of fields (name: value)")
        if channels.get(path.stem.lower()):
            body["channel"] = channels[path.stem.lower()]
        try:
            calendars[path.stem] = Calendar.model_validate({"name": path.stem, **body})
        except (ValidationError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc
    return calendars
