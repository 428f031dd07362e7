"""CSV batch files: read, check every row against the template, report every problem at once.

The user fixes the file once, not row by row: validation collects all problems
(with 1-based row numbers as a spreadsheet shows them, the header being row 1)
before anything is enqueued.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from bot.grammar.flags import lora_request
from engine.catalog import Catalog, Template
from engine.errors import UserError
from engine.spec import MAX_SEED

# Columns that set per-row flags rather than template variables.
FLAG_COLUMNS = ("seed", "lora", "negative", "model")
MAX_PROBLEMS_SHOWN = 20


class BatchFileError(UserError):
    """A CSV that cannot be run as is; ``problems`` lists every fault with its row."""

    kind = "invalid_batch"

    def __init__(self, problems: list[str]) -> None:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        lines = "\n".join(f"• {p}" for p in shown)
        tail = f"\n…and {more} more" if more > 0 else ""
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"the batch file has {len(problems)} {noun}; nothing was queued. "
            f"Fix {'it' if len(problems) == 1 else 'them'} and send the file again:\n{lines}{tail}"
        )
        self.problems = problems


@dataclass(frozen=True)
class BatchRow:
    """One valid CSV row: its spreadsheet row number, variables and per-row flags."""

    number: int
    variables: dict[str, str]
    seed: int | None = None
    loras: tuple[tuple[str, float], ...] = ()
    negative: str = ""
    model: str | None = None


def read_batch_csv(
    data: bytes, *, template: Template, catalog: Catalog, max_rows: int
) -> list[BatchRow]:
    """Parse ``data`` as a UTF-8 CSV for ``template``; raise :class:`BatchFileError`
    listing every problem, or return the rows."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchFileError(
            [f"the file is not UTF-8 text (byte {exc.start}); export it as 'CSV UTF-8'"]
        ) from None
    if "\x00" in text:
        raise BatchFileError(["the file is binary, not a CSV; export the sheet as 'CSV UTF-8'"])
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise BatchFileError([_unreadable(1, exc)]) from None
    if not header:
        raise BatchFileError(["the file is empty; the first line must name the columns"])
    problems = _check_header(header, template)
    # Columns named by a variable's alias (the lesson's ``product_name``) fill that variable.
    reader.fieldnames = [template.variable_name(h) or h for h in header]
    rows: list[BatchRow] = []
    count = 0
    records = enumerate(reader, start=1)
    while True:
        try:
            count, record = next(records)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader cannot go on past a broken row: report it with what came before.
            problems.append(_unreadable(count + 2, exc))
            raise BatchFileError(problems) from None
        number = count + 1  # the header is row 1 in a spreadsheet
        if count > max_rows:
            continue  # refused for its length: counted, not checked (500,000 rows took 7 s)
        if None in record:
            problems.append(f"row {number}: more cells than columns in the header")
            continue
        cells = {k: (v or "").strip() for k, v in record.items()}
        if not any(cells.values()):
            continue  # blank lines at the end of exported sheets
        row, row_problems = _check_row(number, cells, template=template, catalog=catalog)
        problems.extend(row_problems)
        if row is not None:
            rows.append(row)
    if count > max_rows:
        problems.append(f"the file has {count} rows; the limit is {max_rows} per batch (split it)")
    if count == 0:
        problems.append("the file has a header but no rows")
    elif not rows and not problems:  # every row blank: nothing to queue, not a batch of none
        problems.append("every row of the file is empty; fill in at least one row")
    if problems:
        raise BatchFileError(problems)
    return rows


def _unreadable(number: int, exc: csv.Error) -> str:
    """The problem for a row Python's CSV reader refuses (a cell over its size limit, a
    stray quote), in words a spreadsheet user can act on."""
    if "field larger than field limit" in str(exc):
        return (
            f"row {number}: a cell is longer than {csv.field_size_limit():,} characters; "
            "a cell holds a few words (check for an unclosed quote)"
        )
    return f"row {number}: the CSV cannot be read there ({exc}); export the sheet as 'CSV UTF-8'"


def _check_header(header: list[str], template: Template) -> list[str]:
    problems = []
    for name in header:
        if template.variable_name(name) is None and name not in FLAG_COLUMNS:
            problems.append(
                f"row 1: unknown column `{name}`; template `{template.name}` takes "
                f"{', '.join(template.variables)} (and optional {', '.join(FLAG_COLUMNS)})"
            )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    problems.extend(f"row 1: column `{d}` appears twice" for d in duplicates)
    by_variable: dict[str, list[str]] = {}
    for name in dict.fromkeys(header):
        by_variable.setdefault(template.variable_name(name) or name, []).append(name)
    problems.extend(
        f"row 1: columns {' and '.join(f'`{c}`' for c in columns)} both fill `{variable}`; keep one"
        for variable, columns in by_variable.items()
        if len(columns) > 1
    )
    return problems


def _check_row(
    number: int, cells: dict[str, str], *, template: Template, catalog: Catalog
) -> tuple[BatchRow | None, list[str]]:
    problems: list[str] = []
    variables = {k: v for k, v in cells.items() if k in template.variables and v}
    for name, var in template.variables.items():
        if var.required and not variables.get(name):
            problems.append(f"row {number}: `{name}` is empty; template `{template.name}` needs it")
    seed = None
    if cells.get("seed"):
        try:
            seed = int(cells["seed"])
            if not 0 <= seed <= MAX_SEED:
                raise ValueError
        except ValueError:
            problems.append(
                f"row {number}: seed `{cells['seed']}` is not a whole number from 0 to {MAX_SEED}"
            )
    model = cells.get("model") or None
    if model and model not in catalog.models:
        hint = catalog.suggest("model", model)
        problems.append(
            f"row {number}: unknown model `{model}`" + (f"; did you mean `{hint}`?" if hint else "")
        )
    loras: list[tuple[str, float]] = []
    for item in (cells.get("lora") or "").replace(";", " ").split():
        name, _, weight = item.partition(":")
        if name not in catalog.loras:
            hint = catalog.suggest("LoRA", name)
            problems.append(
                f"row {number}: unknown LoRA `{name}`"
                + (f"; did you mean `{hint}`?" if hint else "")
            )
            continue
        try:  # the grammar's own check: a number, within the weights --lora allows
            request = lora_request(name, weight or None, catalog, shown=item)
        except UserError as exc:
            problems.append(f"row {number}: {exc.message}")
            continue
        loras.append(
            (name, catalog.loras[name].weight if request.weight is None else request.weight)
        )
    if problems:
        return None, problems
    row = BatchRow(
        number=number,
        variables=variables,
        seed=seed,
        loras=tuple(loras),
        negative=cells.get("negative", ""),
        model=model,
    )
    return row, []
