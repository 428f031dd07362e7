"""A finished job as A1111 answers it: the PNGs in base64, the request echoed in
``parameters``, and the ``info`` JSON string (:func:`info_text`) that A1111 clients read
seeds and infotexts from. Pure.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import Any

from bot.api.a1111.request import A1111Payload, Img2ImgPayload
from engine.metadata import parse_parameters
from engine.spec import JobSpec


def info_text(
    spec: JobSpec,
    *,
    seeds: Sequence[int],
    infotexts: Sequence[str],
    batch_size: int = 1,
) -> str:
    """The ``info`` of a txt2img/img2img answer: a JSON string, as A1111's
    ``Processed.js()``, of the job's settings, each image's seed (``all_seeds``) and its
    A1111 ``parameters`` text (``infotexts``: what each PNG carries). ``all_prompts`` are
    the prompts the images were rendered from (with LoRA trigger words)."""
    parsed = [parse_parameters(text) for text in infotexts]
    prompts = [p.get("Prompt") or spec.prompt for p in parsed] or [spec.prompt]
    negatives = [p.get("Negative prompt", spec.negative_prompt) for p in parsed] or [
        spec.negative_prompt
    ]
    first_seed = seeds[0] if seeds else spec.seed
    info = {
        "prompt": prompts[0],
        "all_prompts": prompts,
        "negative_prompt": negatives[0],
        "all_negative_prompts": negatives,
        "seed": first_seed,
        "all_seeds": list(seeds),
        "subseed": first_seed,
        "all_subseeds": list(seeds),
        "subseed_strength": 0,
        "width": spec.width,
        "height": spec.height,
        "sampler_name": spec.sampler,
        "cfg_scale": spec.cfg_scale,
        "steps": spec.steps,
        "batch_size": batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": spec.model,
        "sd_model_hash": parsed[0].get("Model hash") if parsed else None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": spec.strength,
        "extra_generation_params": _extra_params(spec),
        "index_of_first_image": 0,
        "infotexts": list(infotexts),
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.gmtime(spec.created_at)),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": "proofroom",
        "job_id": spec.id,  # the native API's id of this job (GET /v1/jobs/{id})
    }
    return json.dumps(info, ensure_ascii=False)


def echoed_parameters(payload: A1111Payload) -> dict[str, Any]:
    """The request as A1111 echoes it in ``parameters``: every field, the input images left
    out unless ``include_init_images`` asked for them."""
    echoed = payload.model_dump()
    if isinstance(payload, Img2ImgPayload) and not payload.include_init_images:
        echoed["init_images"] = None
        echoed["mask"] = None
    return echoed


def encode_image(png: bytes) -> str:
    """A PNG as A1111 returns it: plain base64, no ``data:`` prefix."""
    return base64.b64encode(png).decode("ascii")


def _extra_params(spec: JobSpec) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if spec.loras:
        extra["Lora"] = ", ".join(f"{ref.name}:{ref.weight:g}" for ref in spec.loras)
    if spec.mode == "inpaint":
        extra["Mask blur"] = spec.mask_blur
    return extra


__all__ = ["echoed_parameters", "encode_image", "info_text"]
