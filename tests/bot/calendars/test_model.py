"""Calendars: cron in a time zone, themes per week of month and ISO week."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.calendars.cron import parse_cron
from bot.calendars.model import Calendar, load_calendars, run_for_week
from engine.catalog import Catalog
from engine.errors import CatalogError
from engine.settings import REPO_ROOT


def test_cron_mondays_nine_in_berlin() -> None:
    cron = parse_cron("0 9 * * MON", timezone="Europe/Berlin")
    sunday = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    assert cron.next_after(sunday) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert cron.last_at_or_before(sunday) == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    # Summer time: 09:00 Berlin is 07:00 UTC.
    assert cron.next_after(datetime(2026, 6, 1, 0, 0, tzinfo=UTC)).astimezone(UTC).hour == 7


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 9 * *", "needs 5 fields"),
        ("61 9 * * MON", "outside 0-59"),
        ("0 9 * * FUNDAY", "not a number or name"),
        ("*/x 9 * * MON", "bad step"),
    ],
)
def test_bad_cron_is_explained(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cron(expression)
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_cron("0 9 * * MON", timezone="Mars/Olympus")


def test_shipped_calendar_resolves_and_titles_weeks() -> None:
    calendars = load_calendars(REPO_ROOT / "templates" / "calendars")
    marketing = calendars["marketing"]
    marketing.check(Catalog.load(REPO_ROOT / "templates"))
    assert run_for_week(marketing, "2026-W49").title == "Week 49 · Productivity"
    assert run_for_week(marketing, "2026-W50").title == "Week 50 · Innovation"
    assert run_for_week(marketing, "2026-W48").title == "Week 48 · Black Friday"
    with pytest.raises(CatalogError, match="not an ISO week"):
        run_for_week(marketing, "week 49")


def test_calendar_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "channel: C1\nschedule: '0 9 * *'\nweeks_of_month: {1: {title: T, template: productivity}}\n"
    )
    with pytest.raises(ValueError, match=r"(?s)bad.yaml: .*needs 5 fields"):
        load_calendars(tmp_path)


def test_unknown_template_in_a_theme_is_caught_by_check() -> None:
    calendar = Calendar(
        name="c", channel="C1", weeks_of_month={1: {"title": "T", "template": "nope"}}
    )
    with pytest.raises(CatalogError, match="unknown template `nope`"):
        calendar.check(Catalog.load(REPO_ROOT / "templates"))
