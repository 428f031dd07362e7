"""``proofroom calendar preview <calendar> [--week 2026-W49]``: what a calendar would post,
without posting (the resolved prompt included, so a typo shows before Monday)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from bot.calendars.model import load_calendars, run_for, run_for_week
from bot.settings import BotSettings
from engine.errors import UserError
from engine.model_folders import load_catalog
from engine.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``calendar`` options."""
    sub = parser.add_subparsers(dest="action", required=True)
    preview = sub.add_parser("preview", help="print what a calendar would post for a week")
    preview.add_argument("calendar", help="file name under templates/calendars, without .yaml")
    preview.add_argument("--week", help="ISO week like 2026-W49 (default: the next run)")
    sub.add_parser("list", help="the calendars and their next run")


def run(args: argparse.Namespace) -> int:
    """Print the preview (or the list); 2 with a sentence for an unknown calendar or week."""
    settings, bot_settings = get_settings(), BotSettings()
    catalog = load_catalog(settings)
    try:
        calendars = load_calendars(
            bot_settings.calendars_path(settings), channels=bot_settings.calendar_channels
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    if args.action == "list":
        for name, calendar in calendars.items():
            upcoming = run_for(calendar, calendar.cron.next_after(now))
            title = upcoming.title if upcoming else "(no theme that week)"
            if calendar.idle_reason:
                title += f" (posts nothing: {calendar.idle_reason})"
            print(
                f"{name}: {calendar.platform} channel {calendar.channel or '(not set)'}, "
                f"`{calendar.schedule}` {calendar.timezone}; next: {title}"
            )
        return 0
    if args.calendar not in calendars:
        print(
            f"error: no calendar `{args.calendar}`; known: {', '.join(calendars) or 'none'}",
            file=sys.stderr,
        )
        return 2
    calendar = calendars[args.calendar]
    try:
        week_run = (
            run_for_week(calendar, args.week)
            if args.week
            else run_for(calendar, calendar.cron.next_after(now))
        )
        if week_run is None:
            print(f"{args.calendar}: no theme for that week; nothing would be posted")
            return 0
        theme = week_run.theme
        prompt, negative = catalog.template(theme.template).render(theme.variables)
        model = catalog.model(theme.model) if theme.model else None
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(
        f"calendar  {calendar.name} ({calendar.platform} channel {calendar.channel or '(not set)'})"
    )
    if calendar.idle_reason:
        print(f"idle      posts nothing: {calendar.idle_reason}")
    print(f"thread    {week_run.title}")
    print(f"posts at  {week_run.due:%a %Y-%m-%d %H:%M %Z}")
    print(
        f"images    {theme.variations} from template `{theme.template}`"
        + (f" on `{model.name}`" if model else "")
    )
    print(f"prompt    {prompt}")
    print(f"negative  {negative}")
    if calendar.digest:
        print(f"digest    `{calendar.digest}` ({calendar.timezone})")
    return 0
