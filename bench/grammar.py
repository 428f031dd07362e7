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

Prints the median of each over ``--repeats`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.grammar.parse import parse  # noqa: E402
from bot.grammar.tokens import TokenizeError, tokenize  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.settings import REPO_ROOT  # noqa: E402
from tests.bot.grammar.test_tokens import reference_tokenize  # noqa: E402

SIZES = (3_000, 12_000, 36_000, 100_000)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    catalog = Catalog.load(REPO_ROOT / "templates")
    variants: dict[str, Callable[[str], object]] = {
        "tokenize": _splitting(tokenize),
        "parse, all read": lambda text: parse(text, catalog=catalog, max_prompt_chars=len(text)),
        "parse, as served": lambda text: parse(text, catalog=catalog),
        "original tokenize": _splitting(reference_tokenize),
    }
    print(f"text: /imagine {args.shape!r} repeated; median of {args.repeats} rounds")
    print(f"{'chars':>8}  " + "".join(f"{name:>20}" for name in variants))
    for size in args.sizes:
        text = "/imagine " + args.shape * ((size - len("/imagine ")) // len(args.shape))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, action in variants.items():
                if name == "original tokenize" and size > args.old_max:
                    continue
                started = time.perf_counter()
                action(text)
                times[name].append(time.perf_counter() - started)
        cells = (_ms(statistics.median(t)) if t else "skipped" for t in times.values())
        print(f"{len(text):>8,}  " + "".join(f"{cell:>20}" for cell in cells))
    return 0


def _splitting(split: Callable[[str], object]) -> Callable[[str], object]:
    def run(text: str) -> object:
        try:
            return split(text)
        except TokenizeError as exc:  # an open quote is an answer too
            return exc

    return run


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shape", default="'a ", help='the repeated unit (default: "\'a ")')
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        help="text lengths in characters (default: 3,000 to 100,000)")  # fmt: skip
    parser.add_argument("--old-max", type=int, default=12_000,
                        help="longest text given to the original algorithm (default 12,000)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
