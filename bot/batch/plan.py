"""From a batch command and its CSV rows to one complete ``JobSpec`` per row.

Shared by the chat desk (``bot.batch.desk``) and the CLI twin (``proofroom batch``), so a
file that passes here is the same file everywhere. Every row is resolved before
anything is queued, and every problem is reported with its row number. Whether the rows'
models have workers is checked once for the whole batch by the caller
(``JobResolver.route``), not row by row.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bot.batch.rows import BatchFileError, BatchRow, read_batch_csv
from bot.grammar.parse import BadCommand, ImagineRequest, LoraRequest, parse
from bot.jobs.resolve import JobResolver
from engine.catalog import Catalog
from engine.errors import UserError
from engine.spec import MAX_SEED, JobSpec

BATCH_USAGE = (
    "attach a CSV and name a template, e.g. `/imagine batch product-photo --variations 3 "
    "--seed 100`; each row fills the template's variables by column name "
    "(`/imagine help product-photo` lists them)"
)


@dataclass(frozen=True)
class PlannedRow:
    """One CSV row and the job that renders its variations."""

    row: BatchRow
    spec: JobSpec
    label: str  # "Row 2 · Red Widget", shown under each of its images


def enqueue_all(
    planned: list[PlannedRow],
    *,
    batch_id: str,
    submit: Callable[[JobSpec], str],
    cancel: Callable[[str], object],
) -> list[str]:
    """Queue one job per row through ``submit``, each spec carrying where it belongs
    (``origin``: batch, row, label); return the job ids. If one cannot be queued, the jobs
    already queued are cancelled and the error raised: never half a batch."""
    queued: list[str] = []
    try:
        for item in planned:
            origin = {"batch": batch_id, "row": str(item.row.number), "label": item.label}
            queued.append(submit(item.spec.model_copy(update={"origin": origin})))
    except Exception:
        for job_id in queued:
            cancel(job_id)
        raise
    return queued


def new_batch_id() -> str:
    """A short id people can type (``/imagine batch status b3f2a9c81d``)."""
    return "b" + uuid.uuid4().hex[:9]


def image_file_name(row: int, index: int, seed: int) -> str:
    """How a batch image is named in manifests, zips and the CLI's output folder."""
    return f"row{row:03d}-v{index + 1}-{seed}.png"


def parse_batch_command(
    text: str, *, catalog: Catalog, max_prompt_chars: int
) -> tuple[ImagineRequest, int]:
    """``product-photo --variations 3 --seed 100 ...`` → the request and the variation count."""
    parsed = parse(text, catalog=catalog, max_prompt_chars=max_prompt_chars)
    if isinstance(parsed, BadCommand):
        raise UserError(parsed.message)
    if not isinstance(parsed, ImagineRequest) or parsed.template is None:
        raise UserError(BATCH_USAGE)
    flags = dict(parsed.flags)
    variations = flags.pop("variations", None)
    count = int(variations) if variations is not None else (parsed.count or 1)
    return dataclasses.replace(parsed, flags=flags, count=None), count


def plan_batch(
    data: bytes,
    request: ImagineRequest,
    *,
    variations: int,
    resolver: JobResolver,
    max_rows: int,
    requested_by: str,
) -> list[PlannedRow]:
    """Read the CSV (at most ``max_rows`` rows) and resolve every row;
    :class:`BatchFileError` lists all problems."""
    limit = resolver.limits.max_count
    if not 1 <= variations <= limit:
        raise UserError(f"--variations must be between 1 and {limit}; you asked for {variations}")
    assert request.template is not None
    template = resolver.catalog.template(request.template)
    rows = read_batch_csv(data, template=template, catalog=resolver.catalog, max_rows=max_rows)
    planned: list[PlannedRow] = []
    problems: list[str] = []
    for position, row in enumerate(rows):
        try:
            spec = resolver.resolve(
                _row_request(request, row, position=position, variations=variations),
                requested_by=requested_by,
                route=False,
            ).spec
        except UserError as exc:
            problems.append(f"row {row.number}: {exc.message}")
            continue
        planned.append(
            PlannedRow(
                row=row, spec=spec.model_copy(update={"priority": "bulk"}), label=_label(row)
            )
        )
    if problems:
        raise BatchFileError(problems)
    return planned


def _row_request(
    request: ImagineRequest, row: BatchRow, *, position: int, variations: int
) -> ImagineRequest:
    # With --seed, rows get disjoint seed ranges (row i: seed + i*variations ...), so the
    # whole batch is reproducible from one number; a row's own seed column wins.
    seed = row.seed
    if seed is None and request.seed is not None:
        seed = (request.seed + position * variations) % (MAX_SEED + 1)
    negative = ", ".join(n for n in (request.negative, row.negative) if n) or None
    loras = request.loras + tuple(LoraRequest(name, weight) for name, weight in row.loras)
    return dataclasses.replace(
        request,
        variables={**request.variables, **row.variables},
        seed=seed,
        count=variations,
        negative=negative,
        loras=loras,
        model=row.model or request.model,
    )


def _label(row: BatchRow) -> str:
    first = next(iter(row.variables.values()), "")
    return f"Row {row.number} \u00b7 {first}" if first else f"Row {row.number}"


__all__ = [
    "BATCH_USAGE",
    "image_file_name",
    "new_batch_id",
    "BatchFileError",
    "PlannedRow",
    "parse_batch_command",
    "plan_batch",
]
