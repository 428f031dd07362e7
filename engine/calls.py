"""One pipeline call over several images: stacked prompt embeddings, one CPU generator per
image, float pixels back, each image checked for NaN.

The images of a call may come from several jobs (``engine.merging``): they share the
pipeline's settings (size, steps, sampler, CFG, LoRAs) and differ in their conditioning
and seed. Image i of the call starts from the noise of its own generator, seeded with its
job's seed + index, so it is the image a call of one gives, within float rounding.

A non-finite image (NaN; it would be a black PNG) is decoded again in fp32 when its latents
are finite (``engine.finite.decode_fp32``, on that image alone); when its latents are not,
it is marked :data:`RETRY_ALONE` for the caller to render on its own through
``engine.finite.checked`` (the fp32 re-render), or left out when the pipeline is fp32
already and a retry would repeat the same arithmetic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine import finite
from engine.inputs import PreparedInputs
from engine.spec import JobSpec, Mode

log = logging.getLogger(__name__)

# The marker for an image whose latents are not finite in a half-precision pipeline.
RETRY_ALONE = "retry alone"


@dataclass(frozen=True)
class CallImage:
    """One image of a call: its conditioning (``encode_prompts(...).kwargs()``, batch 1),
    its seed, and a label for log lines."""

    embeds: dict[str, torch.Tensor]
    seed: int
    label: str


def shape_key(embeds: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    """What must match for conditionings to be stacked in one call: a prompt of two
    75-token chunks is 154 tokens long, one of one chunk 77."""
    return tuple(sorted((name, tuple(tensor.shape)) for name, tensor in embeds.items()))


def run_call(
    pipe: Any,
    images: Sequence[CallImage],
    *,
    arguments: dict[str, Any],
    callback: finite.StepCallback,
) -> tuple[list[np.ndarray | str | None], float]:
    """Render ``images`` in one call of ``pipe`` with ``arguments`` (steps, CFG, size, mode
    inputs for as many images) and ``callback`` as ``callback_on_step_end``. Returns, per
    image, float pixels ``[1, h, w, 3]``, :data:`RETRY_ALONE`, or None (left out), and the
    seconds spent inside the pipeline."""
    if len({shape_key(image.embeds) for image in images}) != 1:
        raise ValueError("the images of one call need conditionings of one shape")
    stacked = {
        name: torch.cat([image.embeds[name] for image in images]) for name in images[0].embeds
    }
    generators = [torch.Generator("cpu").manual_seed(image.seed) for image in images]
    tap = finite.LatentTap(callback)
    started = time.perf_counter()
    pixels = pipe(
        **stacked,
        **arguments,
        generator=generators,
        callback_on_step_end=tap,
        # Floats, not PIL: only here does a NaN survive the pipeline's clamp (PIL: a 0).
        output_type="np",
    ).images
    seconds = time.perf_counter() - started
    results: list[np.ndarray | str | None] = []
    for position, image in enumerate(images):
        one = pixels[position : position + 1]
        results.append(one if finite.is_finite(one) else _after_nan(pipe, tap, position, image))
    return results, seconds


def _after_nan(pipe: Any, tap: finite.LatentTap, position: int, image: CallImage) -> Any:
    latents = None if tap.latents is None else tap.latents[position : position + 1]
    if latents is not None and finite.is_finite(latents):
        log.warning("%s is not finite after the VAE decode; decoding it again in fp32", image.label)
        pixels = finite.decode_fp32(pipe, latents)
        if finite.is_finite(pixels):
            log.info("%s is finite after its retry", image.label)
            return pixels
        log.warning("%s is still not finite; it is left out", image.label)
        return None
    if finite.is_half(pipe):
        return RETRY_ALONE
    log.warning("%s is not finite in fp32, where a retry would repeat it; left out", image.label)
    return None


def mode_arguments(spec: JobSpec, inputs: PreparedInputs, *, count: int) -> dict[str, Any]:
    """The pipeline arguments of ``spec`` for a call of ``count`` of its images: steps,
    CFG, and the size or the mode's input images (one per image, so that no pipeline has
    to repeat a single one)."""
    common = {"num_inference_steps": spec.steps, "guidance_scale": spec.cfg_scale}
    size = {"width": spec.width, "height": spec.height}
    if spec.mode is Mode.img2img:  # the size is the init image's, already fitted
        return {**common, "image": [inputs.init] * count, "strength": spec.strength}
    if spec.mode is Mode.inpaint:
        return {
            **common,
            **size,
            "image": [inputs.init] * count,
            "mask_image": [inputs.mask] * count,
            "strength": spec.strength,
        }
    if spec.mode is Mode.controlnet:  # one guide: the pipeline repeats it per image
        return {
            **common,
            **size,
            "image": inputs.control,
            "controlnet_conditioning_scale": spec.control_scale,
            "control_guidance_start": spec.control_start,
            "control_guidance_end": spec.control_end,
        }
    return {**common, **size}


def render_alone(
    pipe: Any,
    spec: JobSpec,
    index: int,
    *,
    inputs: PreparedInputs,
    encode: Callable[[bool], dict[str, torch.Tensor]],
    callback: finite.StepCallback,
    label: str,
    seed: int | None = None,
) -> np.ndarray | None:
    """Image ``index`` of ``spec`` in a call of its own (from ``seed`` instead of its own
    seed: the QA re-render of ``engine.qa``), through ``engine.finite.checked``:
    retried once in full precision (``encode(True)`` gives its conditioning again, from the
    fp32 text encoder: its first one may be where the NaN came from) when its latents come out non-finite in half precision. None when
    it stays non-finite."""

    def attempt(step_callback: finite.StepCallback, again: bool) -> Any:
        generator = torch.Generator("cpu").manual_seed(
            spec.image_seed(index) if seed is None else seed
        )
        return pipe(
            **encode(again),
            **mode_arguments(spec, inputs, count=1),
            generator=[generator],
            callback_on_step_end=step_callback,
            output_type="np",
        ).images

    return finite.checked(pipe, attempt, callback=callback, retry_callback=callback, label=label)


def denoising_steps(spec: JobSpec) -> int:
    """How many of ``spec.steps`` an img2img or inpaint job runs: diffusers skips the first
    ``(1 - strength)`` of the schedule."""
    strength = 1.0 if spec.strength is None else spec.strength
    return min(int(spec.steps * strength), spec.steps)


def input_as_output(pipe: Any, spec: JobSpec, inputs: PreparedInputs, *, label: str) -> Any:
    """An img2img or inpaint job of zero denoising steps: diffusers cannot run zero steps,
    and zero steps of denoising is the input itself, through the VAE like every other
    result (in fp32 when the VAE's own precision overflows). None when not finite."""
    pixels = vae_round_trip(pipe, inputs.init)
    if not finite.is_finite(pixels) and pipe.vae.dtype != torch.float32:
        log.warning("%s is not finite after the VAE; decoding it again in fp32", label)
        pixels = vae_round_trip(pipe, inputs.init, fp32=True)
    if finite.is_finite(pixels):
        return pixels
    log.warning("%s is not finite after the VAE; it is left out", label)
    return None


def vae_round_trip(pipe: Any, image: Any, *, fp32: bool = False) -> Any:
    """``image`` encoded and decoded by the pipeline's VAE (the latent mean, no noise), as
    float pixels ``[1, h, w, 3]``. ``fp32``: with the VAE in fp32 whatever its dtype."""
    vae = pipe.vae
    # SDXL's VAE overflows in fp16; its pipelines run it in fp32 for decoding, and so do we.
    upcast = fp32 or (vae.dtype == torch.float16 and vae.config.get("force_upcast", False))
    with torch.no_grad(), finite.vae_in_fp32(vae) if upcast else nullcontext():
        pixels = pipe.image_processor.preprocess(image).to(device=vae.device, dtype=vae.dtype)
        latents = vae.encode(pixels).latent_dist.mode()
        decoded = vae.decode(latents).sample
    return pipe.image_processor.postprocess(decoded, output_type="np")
