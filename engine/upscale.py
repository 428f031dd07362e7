"""Upscale: an image made ``scale`` times larger, with detail added, as A1111's "SD upscale"
script does it.

1. The source is enlarged to the job's size (``width`` x ``height``) by Lanczos.
2. That image is cut into tiles of ``tile_size`` (the model's native size, so the model
   sees what it was trained on) that overlap by ``tile_overlap``: tile positions step by
   ``tile_size - tile_overlap`` and the last one of a row or column is flush with the
   border, so every tile is full-size.
3. Each tile goes through the model's img2img pipeline at the job's (low) strength, with
   the job's prompt, sampler, steps and CFG, from its own CPU generator seeded with
   seed + tile number: the same spec gives the same picture, on any worker.
4. Tiles are added into a float32 picture with feathered weights (a linear ramp across each
   overlap, full weight elsewhere) and a buffer of weight sums, then divided: in an overlap
   one tile fades out as its neighbour fades in, so no seam shows.

Memory: only the output-sized buffers (:func:`output_bytes`) grow with the output; every
tile's work (its crop, the pipeline call, its weighted pixels) is bounded by the tile and
dropped before the next one. ``bench/upscale.py`` measures it.

A tile that comes out non-finite gets the one retry every image gets (``engine.finite``);
if it stays non-finite the whole upscale is left out (None), as any blank image is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine import finite
from engine.calls import denoising_steps, input_as_output
from engine.errors import CancelledError, SpecError
from engine.inputs import PreparedInputs
from engine.spec import MAX_SEED, JobSpec

log = logging.getLogger(__name__)

# The first step's resamplers by ``JobSpec.upscaler`` (``engine.metadata.UPSCALER_NAMES``:
# what A1111 calls them).
RESAMPLERS = {"lanczos": Image.Resampling.LANCZOS}

ProgressFn = Callable[[int, int], None]  # (steps done, total) over the whole upscale
CancelFn = Callable[[], bool]
Encode = Callable[[bool], dict[str, Any]]  # again -> the job's conditioning


@dataclass(frozen=True)
class Tile:
    """One tile of the pass: its number (seed offset), its top-left corner and size."""

    number: int
    left: int
    top: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The tile as a PIL crop box."""
        return (self.left, self.top, self.left + self.width, self.top + self.height)


def starts(length: int, *, tile: int, overlap: int) -> list[int]:
    """Where the tiles of one axis of ``length`` pixels start: every ``tile - overlap``
    pixels, the last tile flush with the border (a tile longer than the axis is clamped to
    it, so one tile at 0)."""
    tile = min(tile, length)
    stride = max(tile - overlap, 1)
    positions = list(range(0, length - tile, stride))
    positions.append(length - tile)
    return positions


def tiles(width: int, height: int, *, tile: int, overlap: int) -> list[Tile]:
    """The tiles covering ``width`` x ``height``, row by row; numbered from 0."""
    tile_w, tile_h = min(tile, width), min(tile, height)
    return [
        Tile(number, left, top, tile_w, tile_h)
        for number, (top, left) in enumerate(
            (top, left)
            for top in starts(height, tile=tile, overlap=overlap)
            for left in starts(width, tile=tile, overlap=overlap)
        )
    ]


def ramp(length: int, *, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Weights along one axis of a tile: rising linearly over the first ``overlap`` pixels
    when a neighbour comes before it (``fade_in``), falling over the last ``overlap`` when
    one comes after it (``fade_out``), 1 elsewhere. Never 0, so every pixel has weight."""
    weights = np.ones(length, dtype=np.float32)
    width = min(overlap, length // 2)
    if width > 0:
        rising = (np.arange(width, dtype=np.float32) + 0.5) / width
        if fade_in:
            weights[:width] = np.minimum(weights[:width], rising)
        if fade_out:
            weights[length - width :] = np.minimum(weights[length - width :], rising[::-1])
    return weights


def tile_weights(tile: Tile, *, width: int, height: int, overlap: int) -> np.ndarray:
    """The feathered weights ``[h, w]`` of ``tile`` in a ``width`` x ``height`` picture: a
    ramp on each side that has a neighbour, none on the picture's border."""
    across = ramp(
        tile.width,
        overlap=overlap,
        fade_in=tile.left > 0,
        fade_out=tile.left + tile.width < width,
    )
    down = ramp(
        tile.height,
        overlap=overlap,
        fade_in=tile.top > 0,
        fade_out=tile.top + tile.height < height,
    )
    return np.outer(down, across)


def output_bytes(width: int, height: int) -> int:
    """Bytes of the buffers that grow with an upscale's output of ``width`` x ``height``:
    the enlarged source (PIL keeps RGB in 4 bytes a pixel), the float32 picture (3
    channels) and its float32 weight sums."""
    return width * height * (4 + 3 * 4 + 4)


def enlarge(source: Image.Image, *, width: int, height: int, upscaler: str) -> Image.Image:
    """The first step: ``source`` at ``width`` x ``height`` by ``upscaler``."""
    resample = RESAMPLERS.get(upscaler)
    if resample is None:
        known = ", ".join(sorted(RESAMPLERS))
        raise SpecError(f"the upscaler `{upscaler}` is not available here; use {known}")
    return source.convert("RGB").resize((width, height), resample=resample)


def tile_seed(spec: JobSpec, number: int) -> int:
    """The seed of tile ``number``: the job's seed + the tile number, in the 32-bit range."""
    return (spec.seed + number) % (MAX_SEED + 1)


def upscale(
    pipe: Any,
    spec: JobSpec,
    *,
    source: Image.Image,
    encode: Encode,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    label: str = "upscale",
) -> np.ndarray | None:
    """``source`` enlarged to ``spec.width`` x ``spec.height`` and given detail by a tiled
    img2img pass of ``pipe`` (an img2img pipeline), as float pixels ``[1, h, w, 3]`` in
    0..1; None when a tile stays non-finite after its retry.

    ``encode(again)`` gives the job's conditioning (again: anew, for the fp32 retry).
    ``on_progress(done, total)`` after every denoising step, total = tiles x denoising
    steps; ``should_cancel()`` is checked at every step and ends the pass with
    :class:`CancelledError`."""
    width, height = spec.width, spec.height
    size = spec.tile_size or max(width, height)
    overlap = spec.tile_overlap or 0
    plan = tiles(width, height, tile=size, overlap=overlap)
    per_tile = denoising_steps(spec)
    total = len(plan) * max(per_tile, 1)
    enlarged = enlarge(source, width=width, height=height, upscaler=spec.upscaler)
    picture = np.zeros((height, width, 3), dtype=np.float32)
    weight_sums = np.zeros((height, width), dtype=np.float32)
    for tile in plan:
        if should_cancel is not None and should_cancel():
            raise CancelledError(spec.id)
        done_before = tile.number * max(per_tile, 1)
        crop = enlarged.crop(tile.box)
        name = f"{label}, tile {tile.number + 1} of {len(plan)}"
        if per_tile == 0:  # no denoising at all: the crop through the VAE, as img2img does
            pixels = input_as_output(pipe, spec, PreparedInputs(init=crop), label=name)
        else:
            pixels = _tile_pass(
                pipe,
                spec,
                crop,
                seed=tile_seed(spec, tile.number),
                encode=encode,
                callback=_step_callback(
                    spec, per_tile, done_before, total, on_progress, should_cancel
                ),
                retry_callback=_step_callback(spec, per_tile, 0, 0, None, should_cancel),
                label=name,
            )
        if pixels is None:
            log.warning("%s stayed non-finite; the upscale is left out", name)
            return None
        weights = tile_weights(tile, width=width, height=height, overlap=overlap)
        left, top, right, bottom = tile.box
        picture[top:bottom, left:right] += pixels[0] * weights[..., None]
        weight_sums[top:bottom, left:right] += weights
        del pixels, weights, crop  # nothing of a tile outlives it
        if on_progress is not None:
            on_progress(done_before + max(per_tile, 1), total)
    del enlarged
    picture /= weight_sums[..., None]
    np.clip(picture, 0.0, 1.0, out=picture)
    return picture[None]


def _tile_pass(
    pipe: Any,
    spec: JobSpec,
    crop: Image.Image,
    *,
    seed: int,
    encode: Encode,
    callback: finite.StepCallback,
    retry_callback: finite.StepCallback,
    label: str,
) -> np.ndarray | None:
    """One tile through the img2img pipeline, with the retry of ``engine.finite.checked``."""

    def attempt(step_callback: finite.StepCallback, again: bool) -> Any:
        generator = torch.Generator("cpu").manual_seed(seed)
        return pipe(
            **encode(again),
            image=[crop],
            strength=spec.strength,
            num_inference_steps=spec.steps,
            guidance_scale=spec.cfg_scale,
            generator=[generator],
            callback_on_step_end=step_callback,
            output_type="np",  # floats: a NaN survives to be seen (engine.finite)
        ).images

    return finite.checked(
        pipe, attempt, callback=callback, retry_callback=retry_callback, label=label
    )


def _step_callback(
    spec: JobSpec,
    per_tile: int,
    done_before: int,
    total: int,
    on_progress: ProgressFn | None,
    should_cancel: CancelFn | None,
) -> finite.StepCallback:
    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if should_cancel is not None and should_cancel():
            raise CancelledError(spec.id)
        if on_progress is not None:
            # Some samplers (Heun) take more model steps than requested: count requested
            # steps, so the tile ends exactly at its share.
            done = min(per_tile, -(-(step + 1) * per_tile // max(pipe.num_timesteps, 1)))
            on_progress(done_before + done, total)
        return kwargs

    return callback
