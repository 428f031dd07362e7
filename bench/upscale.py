"""An upscale's working memory beyond its output buffers does not grow with the output size.

    python bench/upscale.py            # the full pair
    python bench/upscale.py --quick    # a small pair (under a minute on 2 cores)

Each size runs in a fresh subprocess, so that no size inherits the other's peak: the
``tiny`` model is loaded, its img2img pipeline warmed by a one-tile upscale, and the peak
memory read; then the measured upscale (``engine.upscale.upscale``: Lanczos, then the tiled
img2img pass) runs and the peak is read again. The working memory is the growth of the peak
minus the output-sized buffers (``engine.upscale.output_bytes``: the enlarged source, the
float32 picture and its weight sums). On CPU the peak is the process's
``ru_maxrss``; on CUDA ``torch.cuda.max_memory_allocated`` (the output buffers live on the
CPU there, so nothing is subtracted).

Sizes: on CUDA 256² -> 1024² and 1024² -> 4096² (4x) with 512 px tiles (``--quick``: 64² ->
256² and 128² -> 512², 64 px tiles). On CPU the tiny model's VAE attention makes a 512 px
tile cost minutes, so the CPU pair is 128² -> 256² and 256² -> 512² with 64 px tiles
(``--quick``: 64² -> 128² and 128² -> 256²), about 2 minutes on 2 cores; 256² -> 1024² (441
tiles) took 4 to 7 minutes there and gave the same flat figure. Strength 0.3 of 4 steps: one denoising step
per tile; the figure is memory, not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

STEPS = 4
MIB = 2**20
# (source side, scale) pairs and the tile size, per device kind and run kind.
PAIRS = {
    ("cuda", False): ([(256, 4), (1024, 4)], 512),
    ("cuda", True): ([(64, 4), (128, 4)], 64),
    ("cpu", False): ([(128, 2), (256, 2)], 64),
    ("cpu", True): ([(64, 2), (128, 2)], 64),
}


def measure(*, quick: bool = False) -> dict[str, Any]:
    """The working memory of an upscale at two output sizes, each in its own process."""
    import torch

    kind = "cuda" if torch.cuda.is_available() else "cpu"
    pairs, tile = PAIRS[(kind, quick)]
    runs = [_in_subprocess(side, scale, tile) for side, scale in pairs]
    small, large = runs
    growth = large["working_mib"] - small["working_mib"]
    return {
        "what": (
            f"peak memory of an upscale beyond its output buffers, tiny model, {kind}, "
            f"{tile} px tiles, {STEPS} steps at strength 0.3"
        ),
        "device": kind,
        "tile": tile,
        "runs": runs,
        "output_ratio": round(large["pixels"] / small["pixels"], 1),
        "working_growth_mib": round(growth, 1),
        # Bounded: the larger output's working memory within 10% (or 16 MiB, allocator
        # noise) of the smaller one's.
        "bounded": bool(growth <= max(0.1 * abs(small["working_mib"]), 16.0)),
    }


def _in_subprocess(side: int, scale: int, tile: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", str(side), str(scale), str(tile)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {side}x{scale} run failed: {done.stderr.strip()[-500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def one(side: int, scale: int, tile: int) -> dict[str, Any]:
    """One upscale of a ``side``² picture ``scale`` times with ``tile`` px tiles, in this
    (fresh) process: its peaks and working memory."""
    import numpy as np
    import torch
    from PIL import Image

    from engine.catalog import Catalog
    from engine.derive import tile_overlap
    from engine.pipelines import PipelineCache
    from engine.prompts import encode_prompts
    from engine.settings import Settings
    from engine.spec import Mode, new_spec
    from engine.upscale import output_bytes, tiles, upscale

    settings = Settings()
    cache = PipelineCache(settings=settings)
    loaded, _ = cache.acquire(Catalog.load(settings.templates_dir).model("tiny"))
    pipe = loaded.pipeline(Mode.upscale)
    loaded.use_sampler("Euler a")
    embeds = encode_prompts(pipe, "a red cat on a wooden table", "").kwargs()
    cuda = cache.device.startswith("cuda")

    def spec_of(width: int) -> Any:
        return new_spec(
            limits=settings.limits,
            prompt="a red cat on a wooden table",
            model="tiny",
            mode=Mode.upscale,
            init_image="20250101-0123456789abcdef.png",  # not read: the source is given
            sampler="Euler a",
            steps=STEPS,
            seed=1234,
            width=width,
            height=width,
            scale=scale,
            tile_size=tile,
            tile_overlap=tile_overlap(tile),
        )

    def peak() -> int:
        if cuda:
            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated())
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    source = Image.fromarray(noise).resize((side, side), Image.Resampling.BOX)
    with torch.inference_mode():
        warm = source.resize((tile // scale, tile // scale))
        upscale(pipe, spec_of(tile), source=warm, encode=lambda again: embeds)  # one tile
        before = peak()
        spec = spec_of(side * scale)
        started = time.perf_counter()
        picture = upscale(pipe, spec, source=source, encode=lambda again: embeds)
        seconds = time.perf_counter() - started
        after = peak()
    assert picture is not None and picture.shape == (1, side * scale, side * scale, 3)
    buffers = 0 if cuda else output_bytes(spec.width, spec.height)
    count = len(tiles(spec.width, spec.height, tile=tile, overlap=spec.tile_overlap or 0))
    return {
        "size": f"{side}x{side} -> {spec.width}x{spec.height}",
        "pixels": spec.width * spec.height,
        "tiles": count,
        "render_s": round(seconds, 1),
        "peak_before_mib": round(before / MIB, 1),
        "peak_after_mib": round(after / MIB, 1),
        "output_buffers_mib": round(buffers / MIB, 1),
        "working_mib": round((after - before - buffers) / MIB, 1),
    }


def main() -> None:
    """Print the figures (or, with ``--one``, one size's as a JSON line)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small pair")
    parser.add_argument("--one", nargs=3, type=int, metavar=("SIDE", "SCALE", "TILE"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    print(json.dumps(measure(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
