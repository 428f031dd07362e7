"""The /imagine grammar on long, adversarial text (issue 12), old and new side by side.

    python bench/grammar.py                     # up to the 100 KB case; original up to 12 KB
    python bench/grammar.py --old-max 40000     # the original algorithm further (minutes)

The text is the issue's: ``/imagine`` followed by as many copies of ``'a `` as fit in each
size (every word opens with a quote that never closes); ``--shape`` picks another unit. What is timed,
interleaved in each round so that a busy machine slows all of them alike:

- tokenize: ``bot.grammar.tokens.tokenize``, the word splitter;
- parse, all read: ``bot.grammar.parse.parse`` with a prompt limit above the text's length, so
  that the whole grammar reads the text;
- parse, as served: ``parse`` with the default limits, which refuses a command this long
  before reading it;
- original tokenize: the splitter before issue 12 (the tests' reference), which rescanned
  the rest of the text for each word opening with ``'``: quadratic, so only up to ``--old-max``.

Prints the median of each over ``--repeats`` rounds; ``measure(quick=...)`` returns the same
figures as a dict (``bench/run.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.grammar.parse import parse  # noqa: E402
from bot.grammar.tokens import TokenizeError, tokenize  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.settings import REPO_ROOT  # noqa: E402
from tests.bot.grammar.test_tokens import reference_tokenize  # noqa: E402

SIZES = (3_000, 12_000, 36_000, 100_000)


# name in the table -> key of its figures
VARIANTS = {
    "tokenize": "tokenize_ms",
    "parse, all read": "parse_all_read_ms",
    "parse, as served": "parse_as_served_ms",
    "original tokenize": "original_tokenize_ms",
}


def measure(
    *,
    quick: bool = False,
    redis_url: str | None = None,
    shape: str = "'a ",
    sizes: tuple[int, ...] = SIZES,
    repeats: int | None = None,
    old_max: int = 12_000,
) -> dict[str, Any]:
    """Run the benchmark (see the module's docstring) and return its figures: per text
    length (``rows``) the median milliseconds of each variant (``tokenize_ms``,
    ``parse_all_read_ms``, ``parse_as_served_ms``, ``original_tokenize_ms``: None above
    ``old_max``), and the 100 KB case's on their own (``hostile_*``). ``quick``: one round,
    the original only up to 3,000 characters. ``redis_url`` is accepted as by every bench
    module's ``measure`` and unused: the grammar is pure."""
    del redis_url
    rounds = repeats if repeats is not None else 1 if quick else 3
    old_max = min(old_max, 3_000) if quick else old_max
    catalog = Catalog.load(REPO_ROOT / "templates")
    variants: dict[str, Callable[[str], object]] = {
        "tokenize": _splitting(tokenize),
        "parse, all read": lambda text: parse(text, catalog=catalog, max_prompt_chars=len(text)),
        "parse, as served": lambda text: parse(text, catalog=catalog),
        "original tokenize": _splitting(reference_tokenize),
    }
    rows = []
    for size in sizes:
        text = "/imagine " + shape * ((size - len("/imagine ")) // len(shape))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, action in variants.items():
                if name == "original tokenize" and size > old_max:
                    continue  # quadratic: minutes beyond this
                started = time.perf_counter()
                action(text)
                times[name].append(time.perf_counter() - started)
        row: dict[str, Any] = {"chars": len(text)}
        for name, t in times.items():
            row[VARIANTS[name]] = round(statistics.median(t) * 1000, 2) if t else None
        rows.append(row)
    longest = rows[-1]
    return {
        "what": f"/imagine followed by {shape!r} repeated: the grammar's time per text length",
        "shape": shape,
        "rounds": rounds,
        "old_max_chars": old_max,
        "rows": rows,
        "hostile_chars": longest["chars"],
        "hostile_parse_as_served_ms": longest["parse_as_served_ms"],
        "hostile_parse_all_read_ms": longest["parse_all_read_ms"],
        "hostile_tokenize_ms": longest["tokenize_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    figures = measure(
        shape=args.shape, sizes=tuple(args.sizes), repeats=args.repeats, old_max=args.old_max
    )
    print(f"text: /imagine {args.shape!r} repeated; median of {figures['rounds']} rounds")
    print(f"{'chars':>8}  " + "".join(f"{name:>20}" for name in VARIANTS))
    for row in figures["rows"]:
        cells = (_ms(row[key]) for key in VARIANTS.values())
        print(f"{row['chars']:>8,}  " + "".join(f"{cell:>20}" for cell in cells))
    return 0


def _splitting(split: Callable[[str], object]) -> Callable[[str], object]:
    def run(text: str) -> object:
        try:
            return split(text)
        except TokenizeError as exc:  # an open quote is an answer too
            return exc

    return run


def _ms(ms: float | None) -> str:
    if ms is None:
        return "skipped"
    return f"{ms:.1f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shape", default="'a ", help='the repeated unit (default: "\'a ")')
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="text lengths in characters (default: 3,000 to 100,000)")  # fmt: skip
    parser.add_argument("--old-max", type=int, default=12_000,
                        help="longest text given to the original algorithm (default 12,000)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 3)")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
