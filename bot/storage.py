"""``proofroom store prune``: remove artifacts older than the retention, keeping approved
images and what they need to be rendered again (``engine.store.retention``).

The approved images are read from the export folder's sidecars (``bot.review.export``):
they outlive Redis, and the PNG beside each holds the image's lineage. Run it where that
folder is (the bot's host), e.g. once a day from cron or a compose service (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.settings import BotSettings
from engine.settings import get_settings
from engine.store import ArtifactStoreError, is_id, store_from_settings
from engine.store.base import utc_now
from engine.store.retention import Approved, PruneReport, keep_set, prune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``store prune [--dry-run] [--days N] [--approved DIR]...``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    pruning = sub.add_parser("prune", help="remove old artifacts; approved images stay")
    pruning.add_argument("--dry-run", action="store_true", help="only print what would go")
    pruning.add_argument(
        "--days", type=int, default=None, help="older than this (default PROOFROOM_RETENTION_DAYS)"
    )
    pruning.add_argument(
        "--approved",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder of approved images and sidecars (default: the export folder); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    """Prune; 0 when done (or nothing to do), 1 when the store failed, 2 on bad settings."""
    settings = get_settings()
    days = settings.retention_days if args.days is None else args.days
    if days < 0:
        print(f"error: --days must be 1 or more, not {days}", file=sys.stderr)
        return 2
    if days == 0:
        source = "--days 0" if args.days is not None else "PROOFROOM_RETENTION_DAYS is 0"
        print(f"Retention is off ({source}): nothing removed. Set the days to keep to prune.")
        return 0
    folders = args.approved or [BotSettings().export_path(settings)]
    missing = [folder for folder in folders if not folder.is_dir()]
    if missing:
        # Without the approved images every old artifact would go: refuse instead.
        print(
            f"error: no folder of approved images at {missing[0]}. Run prune on the host "
            "that holds the bot's export folder, name it with --approved DIR, or create it "
            "(empty) if nothing was approved yet.",
            file=sys.stderr,
        )
        return 2
    try:
        store = store_from_settings(settings)
        keep = keep_set(store, approved=[a for folder in folders for a in approved_in(folder)])
        report = prune(store, days=days, keep=keep, now=utc_now(), dry_run=args.dry_run)
    except ArtifactStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_report(report, days=days)
    return 0


def approved_in(folder: Path) -> list[Approved]:
    """The approved images of an export folder: each sidecar's ``artifact_id``, with the
    exported PNG beside it."""
    found = []
    for sidecar in sorted(folder.glob("*.json")):
        try:
            content = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue  # not a sidecar (or half written by hand): it names no image
        artifact_id = content.get("artifact_id") if isinstance(content, dict) else None
        if isinstance(artifact_id, str) and is_id(artifact_id):
            found.append(Approved(artifact_id=artifact_id, png=sidecar.with_suffix(".png")))
    return found


def print_report(report: PruneReport, *, days: int) -> None:
    """One line per artifact removed or kept, then the totals."""
    verb = "would remove" if report.dry_run else "removed"
    for artifact_id in report.removed:
        print(f"{verb} {artifact_id}")
    for artifact_id, why in report.kept.items():
        print(f"kept {artifact_id} ({why})")
    print(
        f"{len(report.removed)} artifact(s) stored before {report.cutoff} ({days} days) "
        f"{verb}; {len(report.kept)} kept because approved images need them."
    )
