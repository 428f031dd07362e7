"""What the worker's automated QA (``engine.qa``) costs per image, on the CPU, at 1024x1024.

    python bench/qa.py                 # 60 rounds
    python bench/qa.py --repeats 200

Each round times every step of the scores on one RGB image of 1024x1024 (a fresh noise
picture with shapes, so that no cache helps): the grayscale conversion and the scale-down
to the analysis size, sharpness, exposure (brightness and contrast), the perceptual hash,
the flags against the thresholds, and all of it together as the worker runs it
(``engine.qa.scores.score`` and ``engine.qa.checks.image_flags``). Prints the median of
each in milliseconds; ``measure(quick=...)`` returns the same figures (``bench/run.py``).
The optional NSFW classifier is not part of it: it is off unless its weights are
configured, and costs what its model costs.
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

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from engine.qa import scores  # noqa: E402
from engine.qa.checks import image_flags  # noqa: E402
from engine.settings import QaThresholds  # noqa: E402

SIDE = 1024


def picture(seed: int) -> Image.Image:
    """A 1024x1024 RGB picture: noise under random rectangles."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, SIDE - 64, 2))
        draw.rectangle([x, y, x + 64, y + 64], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def measure(*, quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    """The median milliseconds of each step and of the whole, over ``repeats`` rounds."""
    repeats = repeats or (20 if quick else 60)
    thresholds = QaThresholds()
    images = [picture(seed) for seed in range(4)]
    times: dict[str, list[float]] = {
        name: [] for name in ("grayscale", "sharpness", "exposure", "phash", "flags", "total")
    }
    for round_ in range(repeats + 2):  # two warm-up rounds (OpenCV's first calls)
        image = images[round_ % len(images)]
        gray, took = _timed(scores.grayscale, image)
        step = {"grayscale": took}
        _, step["sharpness"] = _timed(scores.sharpness, gray)
        _, step["exposure"] = _timed(scores.exposure, gray)
        _, step["phash"] = _timed(scores.phash, gray)
        found = scores.score(image)
        _, step["flags"] = _timed(image_flags, found, thresholds)
        _, step["total"] = _timed(_score_and_flag, image, thresholds)
        if round_ >= 2:
            for name, seconds in step.items():
                times[name].append(seconds)
    figures: dict[str, Any] = {
        "what": f"QA scores of one {SIDE}x{SIDE} RGB image on the CPU, median of {repeats}",
        "size": f"{SIDE}x{SIDE}",
        "rounds": repeats,
    }
    for name, values in times.items():
        figures[f"{name}_ms"] = round(statistics.median(values) * 1000, 3)
    return figures


def _score_and_flag(image: Image.Image, thresholds: QaThresholds) -> list[dict[str, Any]]:
    return image_flags(scores.score(image), thresholds)  # what the worker runs per image


def _timed(work: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work(*args)
    return result, time.perf_counter() - started


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    for key, value in measure(repeats=args.repeats).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
