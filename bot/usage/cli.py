"""``proofroom usage --since 2026-11-01 [--until 2026-12-01] [--by template]
[--format table|csv|json]``: what the GPU did, per user, template, channel or model, from
the usage ledger (``engine.ledger``) in Redis: ``REDIS_URL``'s, else the data folder's own
server that the chat processes use. Days are counted in ``PROOFROOM_TIMEZONE``."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.settings import BotSettings
from bot.usage.periods import label, parse_day
from bot.usage.report import GROUPS, Rates, Report, as_csv, as_json, as_table, build_report
from bot.usage.state import UsageState
from engine.embedded import open_chat_redis
from engine.private_redis import PrivateRedisError
from engine.settings import Settings, get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``usage`` options."""
    parser.add_argument(
        "--since", required=True, metavar="YYYY-MM-DD", help="first day counted (from midnight)"
    )
    parser.add_argument(
        "--until", metavar="YYYY-MM-DD", help="last day counted (default: up to now)"
    )
    parser.add_argument("--by", choices=GROUPS, default="user", help="group by (default user)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    """Print the report; 2 on a bad day or when Redis cannot be reached."""
    settings = get_settings()
    zone = ZoneInfo(BotSettings().timezone)
    try:
        start = parse_day(args.since, zone=zone)
        end = (
            parse_day(args.until, zone=zone) + timedelta(days=1)
            if args.until
            else datetime.now(zone)
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print(f"error: --until must not be before --since ({args.since})", file=sys.stderr)
        return 2
    try:
        report = usage_report(settings, by=args.by, start=start, end=end)
    except PrivateRedisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(as_json(report))
    elif args.format == "csv":
        print(as_csv(report), end="")
    else:
        print(f"Usage {label(start, end, zone=zone)}, by {args.by}")
        print(as_table(report))
    return 0


def usage_report(settings: Settings, *, by: str, start: datetime, end: datetime) -> Report:
    """The report of ``[start, end)`` from the ledger in the deployment's Redis."""
    with open_chat_redis(settings) as chat_redis:
        entries = UsageState(redis=chat_redis.client, settings=settings).between(
            start.timestamp(), end.timestamp()
        )
    return build_report(
        entries,
        by=by,  # type: ignore[arg-type]
        start=start.timestamp(),
        end=end.timestamp(),
        rates=Rates.from_settings(settings),
    )
