"""``make bench``: every benchmark in one run, its figures in ``bench/results/`` and the page
``docs/benchmarks.md`` made from them.

    python bench/run.py                          # all of them (under 10 minutes on 2 cores)
    python bench/run.py --quick                  # fewer rounds, no SD1.5 build (2-3 minutes)
    python bench/run.py --only worker grammar    # some of them
    python bench/run.py --render bench/results/2025-01-31-host.json   # the page again

Each module of :data:`SECTIONS` (``bench/<name>.py``) has ``measure(quick=..., redis_url=...)``
(``bench/gpu.py``: ``measure(quick=...)``), which returns a dict of figures. They run one
after another in this process; a module that raises (or cannot be imported) becomes a failed
section, with its error line on the page, and the others still run. The figures go to
``bench/results/<date>-<host>.json`` (``-quick`` / ``-partial`` added for those runs) with the
machine they came from, then ``bench.report.render_markdown`` writes the page.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import add_redis_url  # noqa: E402
from bench.report import render_markdown  # noqa: E402

# The order they run in: the light ones first, the SD1.5 build (gigabytes) last but the GPU's.
SECTIONS = (
    "commands",
    "grammar",
    "qa",
    "ack",
    "footprint",
    "worker",
    "lora_swap",
    "upscale",
    "gpu",
)
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOC = REPO_ROOT / "docs" / "benchmarks.md"


def run(*, quick: bool, redis_url: str, only: list[str] | None = None) -> dict[str, Any]:
    """Run the sections (all, or ``only`` those) and return the results document."""
    started = datetime.now().astimezone()
    clock = time.perf_counter()
    names = [name for name in SECTIONS if not only or name in only]
    sections: dict[str, Any] = {}
    for position, name in enumerate(names, start=1):
        print(f"[{position}/{len(names)}] bench/{name}.py ...", flush=True)
        sections[name] = run_section(name, quick=quick, redis_url=redis_url)
        outcome = "ok" if sections[name]["ok"] else f"FAILED: {sections[name]['error']}"
        print(
            f"[{position}/{len(names)}] bench/{name}.py {outcome} ({sections[name]['elapsed_s']} s)"
        )
    return {
        "schema": 1,
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - clock, 1),
        "quick": quick,
        "only": names if only else None,
        "machine": machine(),
        "sections": sections,
    }


def run_section(name: str, *, quick: bool, redis_url: str) -> dict[str, Any]:
    """One module's ``measure``: ``{"ok": True, "figures": ...}`` or ``{"ok": False,
    "error": <its error line>}`` (the traceback goes to stderr), with ``elapsed_s``."""
    started = time.perf_counter()
    try:
        measure = importlib.import_module(f"bench.{name}").measure
        arguments: dict[str, Any] = {"quick": quick}
        if "redis_url" in inspect.signature(measure).parameters:
            arguments["redis_url"] = redis_url
        figures = measure(**arguments)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: one module's end is not the run's
        traceback.print_exc()
        return {"ok": False, "elapsed_s": _elapsed(started), "error": error_line(exc)}
    return {"ok": True, "elapsed_s": _elapsed(started), "figures": figures}


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for the page (the rest is in the log)."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    else:
        device = "cpu (no GPU)"
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "commit": _commit(),
    }


def results_path(results: dict[str, Any], *, folder: Path = RESULTS_DIR) -> Path:
    """``<date>-<host>.json`` under ``folder``; ``-quick`` and ``-partial`` runs apart, so
    that they never replace a full run's figures."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", results["machine"]["host"])
    suffix = "-quick" if results["quick"] else ""
    suffix += "-partial" if results.get("only") else ""
    return folder / f"{results['date']}-{host}{suffix}.json"


def write(results: dict[str, Any], *, json_path: Path, doc: Path) -> None:
    """Store ``results`` at ``json_path`` and render the page from it into ``doc``."""
    results["file"] = json_path.name
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_markdown(results))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return (
        f"{head} + local changes" if git("status", "--porcelain", "--untracked-files=no") else head
    )


def _elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks (or only render the page) and say where the figures went."""
    args = _parser().parse_args(argv)
    doc = Path(args.doc)
    if args.render:
        doc.write_text(render_markdown(json.loads(Path(args.render).read_text())))
        print(f"{doc} rendered from {args.render}")
        return 0
    results = run(quick=args.quick, redis_url=args.redis_url, only=args.only)
    json_path = results_path(results, folder=Path(args.results_dir))
    write(results, json_path=json_path, doc=doc)
    failed = [name for name, section in results["sections"].items() if not section["ok"]]
    print(f"figures: {json_path}\npage: {doc}\nin {results['elapsed_s']} s")
    if failed:
        print(f"failed: {', '.join(failed)} (see above; the page says why)")
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a short run")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these")
    parser.add_argument("--render", metavar="JSON", help="only render the page from stored figures")
    parser.add_argument("--doc", default=str(DOC), help="the page to write (default %(default)s)")
    parser.add_argument(
        "--results-dir", default=str(RESULTS_DIR), help="where figures go (default %(default)s)"
    )
    add_redis_url(parser)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
