"""``proofroom batch products.csv --template product-photo --variations 3 --out dir/``: the
chat batch without chat. Same validation and planning as ``/imagine batch`` (every
problem reported with its row before anything is queued), jobs on the ``bulk`` queue,
then the images and a ``manifest.csv`` in ``--out`` (its ``flags`` column says what the
worker's QA found; ``--unflagged`` writes only the images that passed, and lists only
them).

Without ``REDIS_URL`` it runs on the embedded default (in-process store and worker);
with one, the jobs go to the real queue and any worker serving it renders them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import redis as redis_lib

from bot.batch.manifest import ManifestEntry, manifest_csv, unflagged
from bot.batch.plan import (
    PlannedRow,
    enqueue_all,
    image_file_name,
    new_batch_id,
    parse_batch_command,
    plan_batch,
)
from bot.jobs.resolve import JobResolver
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.errors import UserError
from engine.events import EventStream, JobEvent
from engine.model_folders import load_catalog
from engine.outage import refused_login
from engine.queue import JobQueue
from engine.redaction import redacted_url
from engine.settings import Settings, get_settings
from engine.store import store_from_settings

if TYPE_CHECKING:
    from tqdm import tqdm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``batch`` options."""
    parser.add_argument("csv", type=Path, help="UTF-8 CSV; columns name the template's variables")
    parser.add_argument("--template", "-t", required=True, help="prompt template name")
    parser.add_argument("--variations", type=int, default=1, help="images per row (default 1)")
    parser.add_argument("--seed", type=int, help="seed of row 1; row i uses seed + i*variations")
    parser.add_argument("--model", "-m")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", type=float)
    parser.add_argument("--sampler")
    parser.add_argument("--negative", help="added to the template's negative prompt")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]")
    parser.add_argument("--out", "-o", type=Path, default=Path("out/batch"), help="output folder")
    parser.add_argument(
        "--unflagged",
        action="store_true",
        help="write only the images the automated QA did not flag (and list only them)",
    )
    parser.add_argument(
        "--embedded-worker",
        action="store_true",
        help="render in this process even with REDIS_URL set (default without it)",
    )


def run(args: argparse.Namespace) -> int:
    """Plan, queue, wait, write; 0 when every row rendered, 1 when some failed, 2 on bad input."""
    settings = get_settings()
    bot_settings = BotSettings()
    catalog = load_catalog(settings)
    resolver = JobResolver(catalog=catalog, settings=settings, bot_settings=bot_settings)
    try:
        request, variations = parse_batch_command(
            _command_text(args), catalog=catalog, max_prompt_chars=settings.limits.max_prompt_chars
        )
        data = args.csv.read_bytes()
        planned = plan_batch(
            data,
            request,
            variations=variations,
            resolver=resolver,
            max_rows=bot_settings.batch_max_rows,
            requested_by="cli",
        )
    except OSError as exc:
        print(f"error: cannot read {args.csv}: {exc.strerror}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        return _render(planned, args=args, settings=settings, catalog=catalog)
    except redis_lib.AuthenticationError as exc:  # a wrong password: no traceback, no password
        print(f"error: {refused_login(settings.redis_url or '', exc)}", file=sys.stderr)
        return 2


def _render(
    planned: list[PlannedRow], *, args: argparse.Namespace, settings: Settings, catalog: Catalog
) -> int:
    from tqdm import tqdm

    from engine.embedded import redis_for, worker_if_needed

    redis = redis_for(settings)
    events = EventStream(redis=redis, settings=settings)
    queue = JobQueue(redis=redis, settings=settings, catalog=catalog)
    batch_id = new_batch_id()
    group = f"cli-{batch_id}"
    events.ensure_group(group, start="$")  # only this run's events from here on
    rows = {item.spec.id: item for item in planned}
    with worker_if_needed(settings=settings, redis=redis, wanted=args.embedded_worker) as worker:
        if worker is not None:  # one line per job from RQ would bury the progress bar
            logging.getLogger("rq.worker").setLevel(logging.WARNING)
        else:
            where = redacted_url(settings.redis_url)  # the URL's password stays out of sight
            print(f"queued on {where}; waiting for a worker (`proofroom worker`)")
        try:
            enqueue_all(planned, batch_id=batch_id, submit=queue.enqueue, cancel=queue.cancel)
            ended = _wait(
                events,
                group=group,
                jobs=set(rows),
                total=len(planned) * args.variations,
                progress=tqdm,
            )
        finally:
            events.drop_group(group)
    return _write(ended, rows=rows, out=args.out, settings=settings, only_unflagged=args.unflagged)


def _wait(
    events: EventStream, *, group: str, jobs: set[str], total: int, progress: type[tqdm]
) -> dict[str, JobEvent]:
    ended: dict[str, JobEvent] = {}
    with progress(total=total, unit="img", desc="batch") as bar:
        while len(ended) < len(jobs):
            for entry_id, event in events.read(group=group, consumer="cli", block_ms=1000):
                events.ack(group=group, entry_id=entry_id)
                if event.job_id in jobs and event.terminal and event.job_id not in ended:
                    ended[event.job_id] = event
                    count = len(event.result.images) if event.result else 0
                    bar.update(count)
                    if event.kind != "done":
                        bar.write(f"row failed ({event.job_id}): {event.message}")
    return ended


def _write(
    ended: dict[str, JobEvent],
    *,
    rows: dict[str, PlannedRow],
    out: Path,
    settings: Settings,
    only_unflagged: bool = False,
) -> int:
    store = store_from_settings(settings)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[ManifestEntry] = []
    failed = 0
    for job_id, item in sorted(rows.items(), key=lambda kv: kv[1].row.number):
        event = ended[job_id]
        number = item.row.number
        if event.kind != "done" or event.result is None:
            failed += 1
            entries.append(ManifestEntry(number, 0, "", None, item.spec.prompt, "failed", job_id))
            continue
        for image in event.result.images:
            name = image_file_name(number, image.index, image.seed)
            flags = "; ".join(str(flag.get("reason", "")) for flag in image.flags)
            if not (only_unflagged and flags):
                (out / name).write_bytes(store.get(image.artifact_id))
            entries.append(
                ManifestEntry(
                    number,
                    image.index + 1,
                    name,
                    image.seed,
                    item.spec.prompt,
                    "rendered",
                    job_id,
                    flags,
                )
            )
    flagged = sum(1 for e in entries if e.flags)
    listed = unflagged(entries) if only_unflagged else entries
    (out / "manifest.csv").write_bytes(manifest_csv(listed))
    images = sum(1 for e in listed if e.state == "rendered")
    print(
        f"{images} images and manifest.csv in {out}/"
        + (f"; {flagged} flagged by QA" if flagged and not only_unflagged else "")
        + (f"; {flagged} flagged by QA left out" if flagged and only_unflagged else "")
        + (f"; {failed} row(s) failed" if failed else "")
    )
    return 1 if failed else 0


def _command_text(args: argparse.Namespace) -> str:
    """The options as the chat grammar reads them, so both paths share one parser."""
    parts = [args.template, f"--variations {args.variations}"]
    for flag in ("seed", "model", "steps", "cfg", "sampler", "negative"):
        value = getattr(args, flag)
        if value is not None:
            parts.append(f'--{flag} "{value}"')
    parts += [f"--lora {lora}" for lora in args.lora]
    return " ".join(parts)
