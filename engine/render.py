"""Render one ``JobSpec`` into PNG artifacts: the only place a diffusion pipeline is called.

Image k of a job is rendered alone with its own CPU generator seeded with seed + k.
Batching several images into one pipeline call is not bit-identical on CPU (matmul
rounding depends on the batch size), and the contract is that image k of a job is the
very image a single render with seed + k gives, so each image is its own call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import torch

from engine import metadata
from engine.catalog import Catalog, LoraEntry, ModelEntry
from engine.errors import CancelledError, SpecError
from engine.pipelines import PipelineCache
from engine.prompts import encode_prompts
from engine.spec import ImageResult, JobResult, JobSpec, Mode, check_limits
from engine.store import ArtifactStore

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


def render(
    spec: JobSpec,
    *,
    cache: PipelineCache,
    store: ArtifactStore,
    catalog: Catalog,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> JobResult:
    """Render every image of ``spec``, store each as PNG, and say what it cost.

    ``on_progress(done, total)`` is called after every denoising step, counted over the
    whole job (total = steps x count). When ``should_cancel()`` turns true the render
    stops at the next step with :class:`CancelledError`; images already stored stay.
    """
    started = time.perf_counter()
    model, loras = validate(spec, catalog=catalog, cache=cache)
    lora_files = [(entry.name, cache.lora_path(entry), weight) for entry, weight in loras]
    prompt = with_triggers(spec.prompt, [entry for entry, _ in loras])
    loaded, load_s = cache.acquire(model)
    render_started = time.perf_counter()
    images: list[ImageResult] = []
    with loaded.lock:
        loaded.use_sampler(spec.sampler)
        loaded.use_loras(lora_files)
        pipe = loaded.pipe
        embeds = encode_prompts(pipe, prompt, spec.negative_prompt).kwargs()
        for index in range(spec.count):
            if should_cancel is not None and should_cancel():
                raise CancelledError(spec.id)
            seed = spec.image_seed(index)
            image = pipe(
                **embeds,
                num_inference_steps=spec.steps,
                guidance_scale=spec.cfg_scale,
                width=spec.width,
                height=spec.height,
                generator=[torch.Generator("cpu").manual_seed(seed)],
                callback_on_step_end=_step_callback(spec, index, on_progress, should_cancel),
            ).images[0]
            images.append(_store(spec, index, image, prompt=prompt, store=store))
    finished = time.perf_counter()
    return JobResult(
        job_id=spec.id,
        model=spec.model,
        images=images,
        load_s=round(load_s, 3),
        render_s=round(finished - render_started, 3),
        total_s=round(finished - started, 3),
        device=cache.device,
    )


def validate(
    spec: JobSpec, *, catalog: Catalog, cache: PipelineCache
) -> tuple[ModelEntry, list[tuple[LoraEntry, float]]]:
    """Check ``spec`` again on the worker: limits, mode, model and LoRAs (with family)."""
    check_limits(spec, cache.settings.limits)
    if spec.mode is not Mode.txt2img:
        raise SpecError(f"{spec.mode.value} is not supported yet; only txt2img renders today")
    model = catalog.model(spec.model)
    names = [ref.name for ref in spec.loras]
    if len(set(names)) != len(names):
        raise SpecError("each LoRA may be listed once; give one weight per LoRA")
    loras = [(catalog.lora(ref.name, family=model.family), ref.weight) for ref in spec.loras]
    return model, loras


def with_triggers(prompt: str, loras: list[LoraEntry]) -> str:
    """``prompt`` with the LoRAs' trigger words in front, unless the prompt already has them."""
    missing = [
        trigger
        for entry in loras
        for trigger in entry.triggers
        if not re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", prompt, re.IGNORECASE)
    ]
    # In front: the first tokens carry the most weight, and a long prompt's tail may sit
    # in a later 75-token chunk.
    return ", ".join([*dict.fromkeys(missing), prompt]) if missing else prompt


def _step_callback(
    spec: JobSpec, index: int, on_progress: ProgressFn | None, should_cancel: CancelFn | None
) -> Callable[..., dict[str, Any]]:
    total = spec.steps * spec.count

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if should_cancel is not None and should_cancel():
            raise CancelledError(spec.id)
        if on_progress is not None:
            # Some samplers (Heun) take more model steps than requested; report in
            # requested steps so the bar ends exactly at steps x count.
            done = min(spec.steps, -(-(step + 1) * spec.steps // pipe.num_timesteps))
            on_progress(index * spec.steps + done, total)
        return kwargs

    return callback


def _store(
    spec: JobSpec, index: int, image: Any, *, prompt: str, store: ArtifactStore
) -> ImageResult:
    seed = spec.image_seed(index)
    lineage = {"spec": spec.model_dump(mode="json"), "index": index, "seed": seed, "prompt": prompt}
    png = metadata.png_with_parameters(
        image, metadata.parameters_for(spec, index, prompt=prompt), proofroom=lineage
    )
    artifact_id = store.put(
        png,
        suffix=".png",
        meta={"job_id": spec.id, "index": index, "seed": seed, "model": spec.model},
    )
    return ImageResult(
        index=index, seed=seed, artifact_id=artifact_id, width=image.width, height=image.height
    )
