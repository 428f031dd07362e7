"""Non-finite renders: find them, give each one retry in full precision, say what failed.

A NaN anywhere in a diffusion pipeline (an fp16 overflow in the VAE, as SDXL's VAE is known
for, or in the UNet; or a degenerate prompt encoding) reaches the PNG as an all-black
picture: numpy casts NaN to 0. Such an image is never delivered as a success.
``engine.render`` asks for float images (``output_type="np"``, where NaN survives the
pipeline's clamp), checks every one here, and retries a non-finite one once, in the safe
mode that matches where the NaN came from:

- the final latents are finite, so only the decode failed: decode them again with the VAE
  in fp32 (:func:`decode_fp32`);
- the latents are not finite and the pipeline runs in half precision: render the image again
  with every module in fp32 (:func:`full_precision`), then back;
- the pipeline is fp32 already: a retry would repeat the same arithmetic, so the image fails.

An image still non-finite after that is left out of the job with :func:`blank_sentence`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


def is_finite(values: Any) -> bool:
    """Whether every value of a numpy array or torch tensor is finite (no NaN, no inf)."""
    if isinstance(values, torch.Tensor):
        return bool(torch.isfinite(values).all())
    return bool(np.isfinite(values).all())


class LatentTap:
    """A ``callback_on_step_end`` that remembers the latents of the last step, the ones the
    pipeline decodes, so a failed decode can be redone without denoising again. Wraps
    ``inner`` (progress, cancellation), if given."""

    def __init__(self, inner: StepCallback | None = None) -> None:
        self.inner = inner
        self.latents: torch.Tensor | None = None

    def __call__(
        self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        # A reference, not a copy: the schedulers return a new tensor every step.
        self.latents = kwargs.get("latents")
        return self.inner(pipe, step, timestep, kwargs) if self.inner is not None else kwargs


def is_half(pipe: Any) -> bool:
    """Whether any torch module of ``pipe`` holds floating weights in less than fp32."""
    return any(t.dtype != torch.float32 for t in _float_tensors(pipe))


@contextmanager
def vae_in_fp32(vae: Any) -> Iterator[None]:
    """``vae`` in fp32 inside the block, back in its own dtype after it."""
    dtype = vae.dtype
    if dtype != torch.float32:
        vae.to(dtype=torch.float32)
    try:
        yield
    finally:
        if dtype != torch.float32:
            vae.to(dtype=dtype)


@contextmanager
def full_precision(pipe: Any) -> Iterator[None]:
    """Every floating weight of ``pipe``'s modules in fp32 inside the block; afterwards each
    tensor gets its own dtype back (modules kept in fp32 on purpose stay fp32).

    Derived pipelines share their modules with the base one, so this converts those too,
    LoRA adapters and a ControlNet included. It briefly needs the fp32 copy's memory: the
    caller treats running out of memory as a failed retry."""
    saved = [(t, t.dtype) for t in _float_tensors(pipe) if t.dtype != torch.float32]
    try:
        for tensor, _ in saved:
            # ``.data``: the Parameter objects stay the same, so whatever holds them (LoRA
            # layers, shared modules of derived pipelines) sees the change and the restore.
            tensor.data = tensor.data.float()
        yield
    finally:
        for tensor, dtype in saved:
            tensor.data = tensor.data.to(dtype)


def decode_fp32(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """``latents`` (what the pipeline's last step produced) decoded with the VAE in fp32, the
    way the pipeline decodes: unscaled (SDXL: de-normalised when the VAE says how), decoded,
    watermarked and safety-checked when the pipeline does that, post-processed. Returns
    float images ``[n, h, w, 3]`` in 0..1 (NaN kept, so the caller can check again)."""
    vae = pipe.vae
    config = vae.config
    latents = latents.to(device=vae.device, dtype=torch.float32)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean_t = torch.tensor(mean).view(shape).to(latents)
        std_t = torch.tensor(std).view(shape).to(latents)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        latents = latents / config.scaling_factor
    with torch.no_grad(), vae_in_fp32(vae):
        image = vae.decode(latents, return_dict=False)[0]
        if getattr(pipe, "watermark", None) is not None:
            image = pipe.watermark.apply_watermark(image)
        nsfw = None
        checker = getattr(pipe, "safety_checker", None)
        if checker is not None:
            image, nsfw = pipe.run_safety_checker(image, image.device, checker.dtype)
    denormalize = [True] * image.shape[0] if nsfw is None else [not flag for flag in nsfw]
    return pipe.image_processor.postprocess(image, output_type="np", do_denormalize=denormalize)


def checked(
    pipe: Any,
    attempt: Callable[[StepCallback, bool], np.ndarray],
    *,
    callback: StepCallback,
    retry_callback: StepCallback,
    label: str,
) -> np.ndarray | None:
    """Float pixels of ``attempt(callback, False)`` (one pipeline call with
    ``output_type="np"``) when finite; else of its one retry in the safe mode that fits (see
    the module's docstring), the pipeline run again as ``attempt(retry_callback, True)``
    inside :func:`full_precision`; None when they stay non-finite. ``label`` names the image
    in the log lines."""
    tap = LatentTap(callback)
    pixels: np.ndarray | None = attempt(tap, False)
    if is_finite(pixels):
        return pixels
    if tap.latents is not None and is_finite(tap.latents):
        log.warning("%s is not finite after the VAE decode; decoding it again in fp32", label)
        pixels = decode_fp32(pipe, tap.latents)
    elif is_half(pipe):
        log.warning("%s is not finite after denoising; rendering it again in fp32", label)
        try:
            with full_precision(pipe):
                pixels = attempt(retry_callback, True)
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError from torch 2.5 on
            log.warning("%s: no memory for the fp32 copy of the model", label)
            pixels = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    else:
        log.warning("%s is not finite in fp32, where a retry would repeat it; left out", label)
        return None
    if pixels is not None and is_finite(pixels):
        log.info("%s is finite after its retry", label)
        return pixels
    log.warning("%s is still not finite; it is left out", label)
    return None


def blank_sentence(*, seeds: dict[int, int], count: int) -> str:
    """What the requester reads about the images that stayed non-finite: ``seeds`` maps each
    such image's index to its seed; ``count`` is the number of images in the job."""
    indices = sorted(seeds)
    why = "came out blank (the model produced invalid values, NaN)"
    fix = "try another seed, sampler or prompt"
    seed_list = _and([str(seeds[i]) for i in indices])
    if count == 1:
        return f"the image {why} for seed {seed_list}; {fix}"
    if len(indices) == count:
        return f"all {count} images {why} for seeds {seed_list}; {fix}"
    numbers = _and([str(i + 1) for i in indices])
    if len(indices) == 1:
        return f"image {numbers} of {count} (seed {seed_list}) {why} and is left out; {fix}"
    return f"images {numbers} of {count} (seeds {seed_list}) {why} and are left out; {fix}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _float_tensors(pipe: Any) -> list[torch.Tensor]:
    tensors: list[torch.Tensor] = []
    seen: set[int] = set()
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in [*component.parameters(), *component.buffers()]:
            # Modules are shared (a ControlNet pipeline holds the base pipeline's UNet), and
            # tied weights appear twice: each tensor once.
            if tensor.is_floating_point() and id(tensor) not in seen:
                seen.add(id(tensor))
                tensors.append(tensor)
    return tensors
