"""Render jobs into PNG artifacts: the only place a diffusion pipeline is called.

Every mode runs on the model's warm pipeline: txt2img on the base pipeline, img2img,
inpainting and ControlNet on pipelines derived from it (``LoadedPipeline.pipeline``). The
job's input images come from the store by artifact id and are prepared by
``engine.inputs`` (the same checks the bot ran) before the model is touched.

Batched. A job's images go through the pipeline together, up to the model's ``max_batch``
per call, and :func:`render_group` renders several compatible jobs (``engine.merging``) in
the same calls. Image k of a job starts from the noise of seed + k drawn from its own CPU
generator, so seed + k rendered alone gives the same image within float rounding, not bit
for bit: matmul rounding depends on the batch size. Measured on CPU with the tiny models,
a batch of 4 differs from the four solo renders by at most 1/255 per pixel and channel
(one step of the PNG's 8 bits, ``engine.merging.BATCH_TOLERANCE``); the tests hold every
image to that.

An image that comes out non-finite (NaN: it would be a black PNG) gets one retry in a safe
mode (``engine.calls``, ``engine.finite``); if it stays non-finite it is left out and the
job says so with a sentence: through ``on_note`` when other images survive, as
:class:`BlankImageError` when none does.

An upscale job renders alone (:func:`_upscale`): a tiled img2img pass over its enlarged
source (``engine.upscale``), one image kept the same way as every other.

Each kept image is scored by the automated QA (``engine.qa``) before it is stored; under the
policy ``rerender`` a flagged image is rendered once more, alone, from a new seed
(:func:`_rerender`), and that one is kept, flagged or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from engine import finite, gpu, merging
from engine.calls import (
    CallImage,
    denoising_steps,
    input_as_output,
    mode_arguments,
    render_alone,
    run_call,
    shape_key,
)
from engine.catalog import Catalog
from engine.errors import CancelledError
from engine.job_images import CancelFn, JobImages, NoteFn, ProgressFn, RenderRequest
from engine.ledger import split_call_seconds
from engine.merging import CallCounters
from engine.pipelines import PipelineCache
from engine.spec import JobResult, JobSpec, Mode
from engine.store import ArtifactStore
from engine.upscale import upscale

__all__ = ["RenderRequest", "render", "render_group"]

log = logging.getLogger(__name__)


def render(
    spec: JobSpec,
    *,
    cache: PipelineCache,
    store: ArtifactStore,
    catalog: Catalog,
    on_progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    on_note: NoteFn | None = None,
    counters: CallCounters | None = None,
) -> JobResult:
    """Render every image of ``spec``, store each as PNG, and say what it cost.

    ``on_progress(done, total)`` is called after every denoising step, counted over the
    whole job (total = steps x count; a step of a call of n images counts n; an upscale:
    tiles x its denoising steps, ``engine.upscale``). When
    ``should_cancel()`` turns true the render stops at the next step with
    :class:`CancelledError`; images already stored stay. Images that stay non-finite after
    their retry are left out of the result and ``on_note(sentence)`` says which; when no
    image is left, :class:`BlankImageError`. ``counters`` adds up calls, images and the
    seconds spent inside the pipeline.
    """
    request = RenderRequest(spec, on_progress, should_cancel, on_note)
    [outcome] = render_group(
        [request], cache=cache, store=store, catalog=catalog, counters=counters
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def render_group(
    requests: Sequence[RenderRequest],
    *,
    cache: PipelineCache,
    store: ArtifactStore,
    catalog: Catalog,
    counters: CallCounters | None = None,
    gpu_seconds: dict[str, float] | None = None,
) -> list[JobResult | Exception]:
    """Render one job, or several jobs of one :func:`engine.merging.merge_key`, in as few
    pipeline calls as the model's ``max_batch`` allows; each job's outcome in order: its
    result, or the exception it ended with (a user error, :class:`CancelledError`, a
    failure of a call it was in). A job cancelled in a call shared with others ends as
    cancelled when the call does; the others' images are kept. Errors outside any job
    (the model cannot be loaded) are raised. ``gpu_seconds`` (job id -> seconds) adds up
    each job's share of the calls it was in, for the usage ledger (``engine.ledger``)."""
    if len(requests) > 1 and (
        merging.merge_key(requests[0].spec) is None
        or len({merging.merge_key(r.spec) for r in requests}) != 1
    ):
        raise ValueError("only jobs of one merge key render together")
    started = time.perf_counter()
    counters = counters if counters is not None else CallCounters()
    gpu_seconds = gpu_seconds if gpu_seconds is not None else {}
    jobs: list[JobImages] = []
    outcomes: list[JobResult | Exception | None] = [None] * len(requests)
    for position, request in enumerate(requests):
        try:
            jobs.append(
                JobImages.prepare(position, request, store=store, cache=cache, catalog=catalog)
            )
        except Exception as exc:  # this job's own error (a user's, mostly): the others go on
            outcomes[position] = exc
    if not jobs:
        return outcomes  # type: ignore[return-value]
    lead = jobs[0]
    loaded, load_s = cache.acquire(lead.model, vae=catalog.vaes.get(lead.model.vae or ""))
    control = None
    if lead.controlnet is not None:
        control, control_s = cache.acquire_controlnet(lead.controlnet, model=lead.model)
        load_s += control_s
    render_started = time.perf_counter()
    with loaded.lock:
        pipe = loaded.pipeline(lead.spec.mode, controlnet=control)
        loaded.use_sampler(lead.spec.sampler)
        cache.use_loras(loaded=loaded, loras=lead.lora_files, controlnet=control)
        encoding = time.perf_counter()
        for job in jobs:
            job.encode(pipe, loaded=loaded, cache=cache)
        counters.busy_s += time.perf_counter() - encoding  # the pipeline's text encoders
        if lead.spec.mode is Mode.upscale:  # alone: merge_key never pairs an upscale
            _upscale(
                pipe, lead, cache=cache, store=store, counters=counters, gpu_seconds=gpu_seconds
            )
        else:
            counts = [job.spec.count for job in jobs]
            size = {"width": lead.spec.width, "height": lead.spec.height}
            with gpu.vae_for_call(pipe, **size, settings=cache.settings):  # tiles when large
                cap = merging.max_batch(lead.model, device=cache.device)
                for slots in merging.plan_calls(counts, cap=cap):
                    _render_slots(
                        pipe,
                        jobs,
                        slots,
                        store=store,
                        counters=counters,
                        gpu_seconds=gpu_seconds,
                    )
    finished = time.perf_counter()
    for job in jobs:
        outcomes[job.position] = job.outcome(
            load_s=load_s if job is lead else 0.0,
            render_s=finished - render_started,
            total_s=finished - started,
            device=cache.device,
        )
    return outcomes  # type: ignore[return-value]


def _render_slots(
    pipe: Any,
    jobs: list[JobImages],
    slots: list[merging.Slot],
    *,
    store: ArtifactStore,
    counters: CallCounters,
    gpu_seconds: dict[str, float],
) -> None:
    """One planned call: its images, split where conditionings cannot be stacked (prompts
    of other lengths), then stored; a job's failure or cancel ends it alone."""
    for job in {jobs[j].position: jobs[j] for j, _ in slots}.values():
        if job.ended is None and job.cancelled():
            job.ended = CancelledError(job.spec.id)
    live = [(jobs[j], index) for j, index in slots if jobs[j].ended is None]
    groups: dict[tuple[Any, ...], list[tuple[JobImages, int]]] = {}
    for job, index in live:
        groups.setdefault(shape_key(job.embeds), []).append((job, index))
    for group in groups.values():
        group = [(job, index) for job, index in group if job.ended is None]
        if not group:
            continue
        members = list({id(job): job for job, _ in group}.values())
        try:
            results = _call(pipe, group, counters=counters, gpu_seconds=gpu_seconds)
        except CancelledError:  # every job of the call was cancelled
            for job in members:
                job.ended = job.ended or CancelledError(job.spec.id)
            continue
        except Exception as exc:  # a failed call fails its jobs, not the others'
            # One line: the job's own failure is logged with its traceback where it ends.
            ids = ", ".join(j.spec.id for j in members)
            log.warning("a pipeline call for job(s) %s failed: %r", ids, exc)
            for job in members:
                job.ended = job.ended or exc
            continue
        for (job, index), pixels in zip(group, results, strict=True):
            if job.ended is not None:
                continue  # cancelled during the call: its images are not delivered
            try:
                if isinstance(pixels, str):  # RETRY_ALONE
                    pixels = _alone(pipe, job, index, gpu_seconds=gpu_seconds)
                job.keep(
                    pipe,
                    index,
                    pixels,
                    store=store,
                    rerender=_rerender_of(pipe, job, index, gpu_seconds=gpu_seconds),
                )
            except Exception as exc:  # its retry cancelled or failed: this job alone ends
                job.ended = exc
        for job in members:
            job.finished += sum(1 for j, _ in group if j is job)


def _call(
    pipe: Any,
    group: list[tuple[JobImages, int]],
    *,
    counters: CallCounters,
    gpu_seconds: dict[str, float],
) -> list[Any]:
    """Run one call over ``group`` (job, image index); per image its float pixels, or
    :data:`engine.calls.RETRY_ALONE`, or None. The call's seconds are charged to its jobs
    in ``gpu_seconds`` by image count."""
    lead = group[0][0]
    spec = lead.spec
    if spec.mode in (Mode.img2img, Mode.inpaint) and denoising_steps(spec) == 0:
        results = []
        for done, (job, index) in enumerate(group, start=1):  # one job: no call to batch
            results.append(input_as_output(pipe, spec, job.inputs, label=job.label(index)))
            job.progress(images=done, steps_done=spec.steps)
        return results
    images = [
        CallImage(embeds=job.embeds, seed=job.spec.image_seed(index), label=job.label(index))
        for job, index in group
    ]
    results, seconds = run_call(
        pipe,
        images,
        arguments=mode_arguments(spec, lead.inputs, count=len(group)),
        callback=_call_callback(group),
    )
    counters.add(images=len(group), seconds=seconds)
    for job_id, share in split_call_seconds(seconds, [job.spec.id for job, _ in group]).items():
        _charge(gpu_seconds, str(job_id), share)
    return results


def _rerender_of(
    pipe: Any, job: JobImages, index: int, *, gpu_seconds: dict[str, float]
) -> Callable[[int], Any] | None:
    """How image ``index`` of ``job`` is rendered again from a new seed; None for a job
    of zero denoising steps, whose output is its input whatever the seed."""
    spec = job.spec
    if spec.mode in (Mode.img2img, Mode.inpaint) and denoising_steps(spec) == 0:
        return None
    return lambda seed: _alone(pipe, job, index, gpu_seconds=gpu_seconds, seed=seed)


def _alone(
    pipe: Any,
    job: JobImages,
    index: int,
    *,
    gpu_seconds: dict[str, float],
    seed: int | None = None,
) -> Any:
    """Image ``index`` of ``job`` in a call of its own, its seconds charged to the job: a
    retry after a non-finite batch (its own seed), or the one re-render the QA policy
    ``rerender`` gives a flagged image (``seed``: a new one, ``engine.qa``)."""
    started = time.perf_counter()
    try:
        return render_alone(
            pipe,
            job.spec,
            index,
            inputs=job.inputs,
            encode=partial(job.conditioning, pipe),
            callback=_cancel_only(job),
            label=job.label(index) + ("" if seed is None else " (QA re-render)"),
            seed=seed,
        )
    finally:
        _charge(gpu_seconds, job.spec.id, time.perf_counter() - started)


def _upscale(
    pipe: Any,
    job: JobImages,
    *,
    cache: PipelineCache,
    store: ArtifactStore,
    counters: CallCounters,
    gpu_seconds: dict[str, float],
) -> None:
    """An upscale job: its tiled img2img pass (``engine.upscale``), its seconds charged to
    it as :func:`_alone` does, and its one image kept like every other (QA, PNG metadata,
    the store). No QA re-render: the upscale's seed is its parent image's."""
    spec = job.spec
    assert job.inputs.init is not None  # check_mode: an upscale has its source
    tile = spec.tile_size or max(spec.width, spec.height)
    started = time.perf_counter()
    pixels = None
    try:
        # The VAE sees one tile at a time: its tiling follows the tile, not the output.
        with gpu.vae_for_call(pipe, width=tile, height=tile, settings=cache.settings):
            pixels = upscale(
                pipe,
                spec,
                source=job.inputs.init,
                encode=partial(job.conditioning, pipe),
                on_progress=job.request.on_progress,
                should_cancel=job.cancelled,
                label=job.label(0),
            )
    except Exception as exc:  # cancelled, or the pass failed: this job ends with it
        job.ended = exc
    finally:
        seconds = time.perf_counter() - started
        counters.add(images=1, seconds=seconds)
        _charge(gpu_seconds, spec.id, seconds)
    if job.ended is None:
        try:
            job.keep(pipe, 0, pixels, store=store)
        except Exception as exc:
            job.ended = exc
    job.finished = 1


def _charge(gpu_seconds: dict[str, float], job_id: str, seconds: float) -> None:
    gpu_seconds[job_id] = gpu_seconds.get(job_id, 0.0) + seconds


def _call_callback(group: list[tuple[JobImages, int]]) -> finite.StepCallback:
    per_job: dict[int, tuple[JobImages, int]] = {}
    for job, _ in group:
        count = per_job.get(id(job), (job, 0))[1]
        per_job[id(job)] = (job, count + 1)
    steps = group[0][0].spec.steps

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        live = [(job, n) for job, n in per_job.values() if job.ended is None]
        for job, _ in live:
            if job.cancelled():
                job.ended = CancelledError(job.spec.id)
        if all(job.ended is not None for job, _ in per_job.values()):
            raise CancelledError(group[0][0].spec.id)
        # Some samplers (Heun) take more model steps than requested; report in
        # requested steps so the bar ends exactly at steps x count.
        done = min(steps, -(-(step + 1) * steps // pipe.num_timesteps))
        for job, n in live:
            if job.ended is None:
                job.progress(images=n, steps_done=done)
        return kwargs

    return callback


def _cancel_only(job: JobImages) -> finite.StepCallback:
    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if job.cancelled():
            raise CancelledError(job.spec.id)
        return kwargs

    return callback
