"""Switching LoRA sets between jobs vs loading a model, measured side by side in one run.

    python bench/lora_swap.py                       # the tiny model and its two test LoRAs
    python bench/lora_swap.py --model sd15 --loras detail-tweaker film-grain --repeats 20

What is timed, with the worker's own code (``engine.pipelines``):

- model load: a fresh ``PipelineCache`` loading the model from disk (a built-in model is
  first saved as a diffusers folder, so its load reads files like a real one);
- LoRA first load: reading a LoRA file into the warm pipeline as a named adapter;
- LoRA switch: activating the other resident set with its weights (``set_adapters``),
  what a job pays when its LoRAs differ from the previous job's;
- LoRA off: a job without LoRAs after one with (``disable_lora``).

Prints medians and the ratio model load / LoRA switch. Weights are never downloaded: a Hub
model must already be in the local cache (HF_HUB_OFFLINE=1 is set here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.catalog import Catalog, ModelEntry  # noqa: E402
from engine.settings import Settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from engine import tiny
    from engine.pipelines import PipelineCache

    diffusers_logging.disable_progress_bar()  # the table is the output
    transformers_logging.disable_progress_bar()

    with tempfile.TemporaryDirectory(prefix="proofroom-bench-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp) / "data",
            model_cache_dir=Path(args.model_cache),
            device=args.device,
        )
        catalog = Catalog.load(settings.templates_dir)
        model = catalog.model(args.model)
        if model.source.startswith("builtin:"):
            # Save the built-in as a diffusers folder so the load below reads it from disk.
            folder = Path(tmp) / model.name
            tiny.load(model.source.removeprefix("builtin:")).save_pretrained(folder)
            model = ModelEntry(**{**model.model_dump(), "source": str(folder)})
        device = PipelineCache(settings=settings).device

        def sync() -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def load() -> None:
            PipelineCache(settings=settings).acquire(model)

        model_load = _timed(load, sync, repeats=args.load_repeats)

        cache = PipelineCache(settings=settings)
        loaded, _ = cache.acquire(model)
        first, second = (catalog.lora(name, family=model.family) for name in args.loras)
        set_a = [(first.name, cache.lora_path(first), first.weight)]
        set_b = [(second.name, cache.lora_path(second), second.weight)]
        first_load = _timed(lambda: loaded.use_loras(set_a), sync, repeats=1)
        first_load += _timed(lambda: loaded.use_loras(set_b), sync, repeats=1)
        switches: list[float] = []
        offs: list[float] = []
        for _ in range(args.repeats):
            switches += _timed(lambda: loaded.use_loras(set_a), sync, repeats=1)
            switches += _timed(lambda: loaded.use_loras(set_b), sync, repeats=1)
            offs += _timed(lambda: loaded.use_loras([]), sync, repeats=1)
        reads = sum(cache.lora_reads.values())

    load_s, switch_s = statistics.median(model_load), statistics.median(switches)
    print(f"model {args.model} on {device}, LoRAs {' / '.join(args.loras)}")
    print(f"{'what':<24}{'median':>12}{'runs':>8}")
    for label, values in (
        ("model load (from disk)", model_load),
        ("LoRA first load", first_load),
        ("LoRA switch A <-> B", switches),
        ("LoRA off", offs),
    ):
        print(f"{label:<24}{_ms(statistics.median(values)):>12}{len(values):>8}")
    print(f"LoRA files read: {reads} (one per file, however many switches)")
    print(f"ratio model load / LoRA switch: {load_s / switch_s:.0f}x")
    return 0


def _timed(action: Callable[[], object], sync: Callable[[], None], *, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        action()
        sync()
        times.append(time.perf_counter() - started)
    return times


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="tiny", help="catalog model name (default tiny)")
    parser.add_argument(
        "--loras",
        nargs=2,
        default=["tiny-style", "tiny-brand"],
        metavar=("A", "B"),
        help="two catalog LoRAs of the model's family",
    )
    parser.add_argument("--repeats", type=int, default=20, help="switch rounds (A, B, off)")
    parser.add_argument("--load-repeats", type=int, default=5, help="model loads")
    parser.add_argument("--device", default=None, help="cpu, cuda... (default: auto)")
    parser.add_argument("--model-cache", default=".proofroom/models", help="model cache dir")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
