"""Content calendars: the files (``model``, with ``cron`` schedules), the chat desk that posts
each week and its digest (``desk``), exactly once (``scheduler``, on the keys of ``state``),
and ``proofroom calendar`` (``cli``, imported on use)."""

from bot.calendars.cron import Cron, parse_cron
from bot.calendars.desk import CalendarDesk
from bot.calendars.model import Calendar, Theme, WeekRun, load_calendars, run_for, run_for_week
from bot.calendars.scheduler import CalendarScheduler, Clock, utc_now
from bot.calendars.state import CalendarState

__all__ = [
    "Calendar",
    "CalendarDesk",
    "CalendarScheduler",
    "CalendarState",
    "Clock",
    "Cron",
    "Theme",
    "WeekRun",
    "load_calendars",
    "parse_cron",
    "run_for",
    "run_for_week",
    "utc_now",
]
