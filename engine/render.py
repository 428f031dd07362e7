"""Render one ``JobSpec`` into PNG artifacts: the only place a diffusion pipeline is called.

Every mode runs on the model's warm pipeline: txt2img on the base pipeline, img2img,
inpainting and ControlNet on pipelines derived from it (``LoadedPipeline.pipeline``). The
job's input images come from the store by artifact id and are prepared by
``engine.inputs`` (the same checks the bot ran) before the model is touched.

Image k of a job is rendered alone with its own CPU generator seeded with seed + k.
Batching several images into one pipeline call is not bit-identical on CPU (matmul
rounding depends on the batch size), and the contract is that image k of a job is the
very image a single render with seed + k gives, so each image is its own call.

An image that comes out non-finite (NaN: it would be a black PNG) gets one retry in a safe
mode (``engine.finite``); if it stays non-finite it is left out and the job says so with
a sentence: through ``on_note`` when other images survive, as :class:`BlankImageError`
when none does.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from engine import finite, metadata
from engine.catalog import Catalog, ControlNetEntry, LoraEntry, ModelEntry
from engine.control import control_image
from engine.embeddings import embeddings_for, use_embeddings
from engine.errors import BlankImageError, CancelledError, SpecError
from engine.file_hashes import embedding_short_hash, lora_short_hash
from engine.inputs import PreparedInputs, overlay, prepare
from engine.pipelines import PipelineCache
from engine.prompts import encode_prompts
from engine.spec import ImageResult, JobResult, JobSpec, Mode, check_limits
from engine.store import ArtifactNotFoundError, ArtifactStore

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
NoteFn = Callable[[str], None]


def render(
    spec: JobSpec,
    *,
    cache: PipelineCache,
    store: ArtifactStore,
    catalog: Catalog,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    on_note: NoteFn | None = None,
) -> JobResult:
    """Render every image of ``spec``, store each as PNG, and say what it cost.

    ``on_progress(done, total)`` is called after every denoising step, counted over the
    whole job (total = steps x count). When ``should_cancel()`` turns true the render
    stops at the next step with :class:`CancelledError`; images already stored stay.
    Images that stay non-finite after their retry are left out of the result and
    ``on_note(sentence)`` says which; when no image is left, :class:`BlankImageError`.
    """
    started = time.perf_counter()
    model, loras, controlnet = validate(spec, catalog=catalog, cache=cache)
    lora_files = [(entry.name, cache.lora_path(entry), weight) for entry, weight in loras]
    prompt = with_triggers(spec.prompt, [entry for entry, _ in loras])
    # Embeddings the prompt or negative names (name, file): checked before any load.
    embedding_files = embeddings_for(
        catalog, model, [prompt, spec.negative_prompt], settings=cache.settings
    )
    inputs = load_inputs(spec, store=store, cache=cache)  # a bad input fails before any load
    loaded, load_s = cache.acquire(model, vae=catalog.vaes.get(model.vae or ""))
    control = None
    if controlnet is not None:
        control, control_s = cache.acquire_controlnet(controlnet, model=model)
        load_s += control_s
    render_started = time.perf_counter()
    images: list[ImageResult] = []
    blank: dict[int, int] = {}  # index -> seed of the images left out
    with loaded.lock:
        pipe = loaded.pipeline(spec.mode, controlnet=control)
        loaded.use_sampler(spec.sampler)
        cache.use_loras(loaded=loaded, loras=lora_files, controlnet=control)
        hashes = metadata.ResourceHashes(  # each file hashed once, then read from the cache
            model=loaded.model_hash,
            loras={
                name: cache.short_hash(lora_short_hash, path) or "" for name, path, _ in lora_files
            },
            embeddings={
                f.name: cache.short_hash(embedding_short_hash, f.path) or ""
                for f in embedding_files
            },
        )
        words = use_embeddings(loaded, embedding_files)  # each loaded once, then resident
        embeds = encode_prompts(pipe, prompt, spec.negative_prompt, embeddings=words).kwargs()
        for index in range(spec.count):
            if should_cancel is not None and should_cancel():
                raise CancelledError(spec.id)
            pixels = _render_one(
                pipe,
                spec,
                index,
                embeds,
                inputs,
                on_progress,
                should_cancel,
                prompt=prompt,
                words=words,
            )
            if pixels is None:
                blank[index] = spec.image_seed(index)
                continue
            image = pipe.image_processor.numpy_to_pil(pixels)[0]
            if spec.mode is Mode.inpaint:
                assert inputs.init is not None and inputs.mask is not None
                image = overlay(inputs.init, image, inputs.mask, blur=spec.mask_blur)
            images.append(_store(spec, index, image, prompt=prompt, store=store, hashes=hashes))
    if blank:
        sentence = finite.blank_sentence(seeds=blank, count=spec.count)
        if not images:
            raise BlankImageError(sentence)
        if on_note is not None:
            on_note(sentence)
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
) -> tuple[ModelEntry, list[tuple[LoraEntry, float]], ControlNetEntry | None]:
    """Check ``spec`` again on the worker: limits (each LoRA listed once too), mode, model,
    LoRAs and ControlNet (each with its family)."""
    check_limits(spec, cache.settings.limits)
    model = catalog.model(spec.model)
    loras = [(catalog.lora(ref.name, family=model.family), ref.weight) for ref in spec.loras]
    controlnet = None
    if spec.controlnet is not None:
        controlnet = catalog.controlnet(spec.controlnet, model=model)
        if controlnet.control != spec.control_type:
            raise SpecError(
                f"ControlNet `{controlnet.name}` reads {controlnet.control} guides, "
                f"not {spec.control_type}"
            )
    return model, loras, controlnet


def load_inputs(spec: JobSpec, *, store: ArtifactStore, cache: PipelineCache) -> PreparedInputs:
    """The job's input images from the store, decoded and fitted to the job's size, with
    the control image turned into its guide (canny edges)."""
    data: dict[str, bytes] = {}
    for role, artifact_id in spec.input_images().items():
        try:
            data[role] = store.get(artifact_id)
        except ArtifactNotFoundError:
            raise SpecError(
                f"the {role} image of this job is no longer stored; attach it again"
            ) from None
    prepared = prepare(
        images=data,
        width=spec.width,
        height=spec.height,
        how=spec.input_fit,
        max_pixels=cache.settings.limits.max_input_pixels,
    )
    if prepared.control is not None and spec.control_type is not None:
        guide = control_image(prepared.control, control=spec.control_type)
        prepared = PreparedInputs(init=prepared.init, mask=prepared.mask, control=guide)
    return prepared


def _render_one(
    pipe: Any,
    spec: JobSpec,
    index: int,
    embeds: dict[str, Any],
    inputs: PreparedInputs,
    on_progress: ProgressFn | None,
    should_cancel: CancelFn | None,
    *,
    prompt: str,
    words: dict[str, list[str]] | None = None,
) -> Any | None:
    """Image ``index`` as float pixels ``[1, h, w, 3]``: one pipeline call with its own CPU
    generator (seed + index), retried once in a safe mode when not finite (see
    ``engine.finite``); None when it stays non-finite."""
    label = f"job {spec.id}: image {index}"
    if spec.mode in (Mode.img2img, Mode.inpaint) and denoising_steps(spec) == 0:
        # diffusers cannot run zero steps; zero steps of denoising is the input itself,
        # through the VAE like every other result.
        pixels = vae_round_trip(pipe, inputs.init)
        if on_progress is not None:
            on_progress((index + 1) * spec.steps, spec.steps * spec.count)
        if not finite.is_finite(pixels) and pipe.vae.dtype != torch.float32:
            log.warning("%s is not finite after the VAE; decoding it again in fp32", label)
            pixels = vae_round_trip(pipe, inputs.init, fp32=True)
        if finite.is_finite(pixels):
            return pixels
        log.warning("%s is not finite after the VAE; it is left out", label)
        return None

    def attempt(callback: finite.StepCallback, again: bool) -> Any:
        # ``again`` runs in full precision: the prompt is encoded again by the fp32 text
        # encoder, its first embeddings may be where the NaN came from.
        now = (
            encode_prompts(pipe, prompt, spec.negative_prompt, embeddings=words).kwargs()
            if again
            else embeds
        )
        generator = torch.Generator("cpu").manual_seed(spec.image_seed(index))
        return pipe(
            **now,
            **_mode_arguments(spec, inputs),
            num_inference_steps=spec.steps,
            guidance_scale=spec.cfg_scale,
            generator=[generator],
            callback_on_step_end=callback,
            # Floats, not PIL: only here does a NaN survive the pipeline's clamp (PIL: a 0).
            output_type="np",
        ).images

    return finite.checked(
        pipe,
        attempt,
        callback=_step_callback(spec, index, on_progress, should_cancel),
        retry_callback=_step_callback(spec, index, None, should_cancel),  # progress was told
        label=label,
    )


def _mode_arguments(spec: JobSpec, inputs: PreparedInputs) -> dict[str, Any]:
    size = {"width": spec.width, "height": spec.height}
    if spec.mode is Mode.img2img:  # the size is the init image's, already fitted
        return {"image": inputs.init, "strength": spec.strength}
    if spec.mode is Mode.inpaint:
        return {**size, "image": inputs.init, "mask_image": inputs.mask, "strength": spec.strength}
    if spec.mode is Mode.controlnet:
        return {
            **size,
            "image": inputs.control,
            "controlnet_conditioning_scale": spec.control_scale,
            "control_guidance_start": spec.control_start,
            "control_guidance_end": spec.control_end,
        }
    return size


def denoising_steps(spec: JobSpec) -> int:
    """How many of ``spec.steps`` an img2img or inpaint job runs: diffusers skips the first
    ``(1 - strength)`` of the schedule."""
    strength = 1.0 if spec.strength is None else spec.strength
    return min(int(spec.steps * strength), spec.steps)


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
    spec: JobSpec,
    index: int,
    image: Any,
    *,
    prompt: str,
    store: ArtifactStore,
    hashes: metadata.ResourceHashes | None = None,
) -> ImageResult:
    seed = spec.image_seed(index)
    lineage = {"spec": spec.model_dump(mode="json"), "index": index, "seed": seed, "prompt": prompt}
    png = metadata.png_with_parameters(
        image, metadata.parameters_for(spec, index, prompt=prompt, hashes=hashes), proofroom=lineage
    )
    artifact_id = store.put(
        png,
        suffix=".png",
        meta={"job_id": spec.id, "index": index, "seed": seed, "model": spec.model},
    )
    return ImageResult(
        index=index, seed=seed, artifact_id=artifact_id, width=image.width, height=image.height
    )
