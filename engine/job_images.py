"""A job's images while they render: what is checked and read before the model is touched,
its conditioning, its progress over the calls it is in, and each image stored as a PNG with
its metadata. ``engine.render`` runs the calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from engine import finite, metadata
from engine.catalog import Catalog, ControlNetEntry, LoraEntry, ModelEntry
from engine.control import control_image
from engine.embeddings import EmbeddingFile, embeddings_for, use_embeddings
from engine.errors import BlankImageError, SpecError
from engine.file_hashes import embedding_short_hash, lora_short_hash
from engine.inputs import PreparedInputs, overlay, prepare, same_shape, unfitted
from engine.loras import LoraFile
from engine.pipelines import LoadedPipeline, PipelineCache
from engine.prompts import encode_prompts
from engine.qa.assess import JobQa, Verdict, rerender_seed
from engine.spec import ImageResult, JobResult, JobSpec, Mode, check_limits
from engine.store import ArtifactNotFoundError, ArtifactStore
from engine.store.retention import lineage_meta

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]
NoteFn = Callable[[str], None]
RerenderFn = Callable[[int], Any]  # seed -> float pixels of the image again, or None


@dataclass
class RenderRequest:
    """One job of a group, with its own progress, cancel and note callbacks (see
    ``engine.render.render``)."""

    spec: JobSpec
    on_progress: ProgressFn | None = None
    should_cancel: CancelFn | None = None
    on_note: NoteFn | None = None


@dataclass
class JobImages:
    """A job of a group while it renders: what was prepared for it, and how far it got."""

    position: int
    request: RenderRequest
    model: ModelEntry
    lora_files: list[LoraFile]
    controlnet: ControlNetEntry | None
    prompt: str
    embedding_files: list[EmbeddingFile]
    inputs: PreparedInputs
    words: dict[str, list[str]] = field(default_factory=dict)
    embeds: dict[str, Any] = field(default_factory=dict)
    hashes: metadata.ResourceHashes | None = None
    qa: JobQa | None = None  # its images' automated checks (engine.qa)
    images: list[ImageResult] = field(default_factory=list)
    blank: dict[int, int] = field(default_factory=dict)  # index -> seed of images left out
    finished: int = 0  # images rendered, left out or skipped: the progress before a call
    ended: Exception | None = None  # cancelled, or a call it was in failed: no more calls

    @property
    def spec(self) -> JobSpec:
        """The job's spec."""
        return self.request.spec

    @classmethod
    def prepare(
        cls,
        position: int,
        request: RenderRequest,
        *,
        store: ArtifactStore,
        cache: PipelineCache,
        catalog: Catalog,
    ) -> JobImages:
        """Everything checked and read before the model is touched: limits, names, the
        embeddings the prompts name, the input images."""
        spec = request.spec
        model, loras, controlnet = validate(spec, catalog=catalog, cache=cache)
        prompt = with_triggers(spec.prompt, [entry for entry, _ in loras])
        qa = cache.settings.qa
        template = catalog.templates.get(spec.template or "")
        return cls(
            qa=JobQa(settings=qa, thresholds=template.qa_thresholds(qa) if template else qa),
            position=position,
            request=request,
            model=model,
            lora_files=[(entry.name, cache.lora_path(entry), weight) for entry, weight in loras],
            controlnet=controlnet,
            prompt=prompt,
            embedding_files=embeddings_for(
                catalog, model, [prompt, spec.negative_prompt], settings=cache.settings
            ),
            inputs=load_inputs(spec, store=store, cache=cache),  # fails before any load
        )

    def encode(self, pipe: Any, *, loaded: LoadedPipeline, cache: PipelineCache) -> None:
        """Its conditioning, and the hashes of the files it uses (each file hashed once,
        then read from the cache)."""
        self.hashes = metadata.ResourceHashes(
            model=loaded.model_hash,
            loras={
                name: cache.short_hash(lora_short_hash, path) or ""
                for name, path, _ in self.lora_files
            },
            embeddings={
                f.name: cache.short_hash(embedding_short_hash, f.path) or ""
                for f in self.embedding_files
            },
        )
        self.words = use_embeddings(loaded, self.embedding_files)  # loaded once, resident
        self.embeds = self.conditioning(pipe, False)

    def conditioning(self, pipe: Any, again: bool) -> dict[str, Any]:
        """Its conditioning as pipeline arguments (computed anew: with ``again``, by a text
        encoder now in fp32)."""
        if self.embeds and not again:
            return self.embeds
        prompts = encode_prompts(
            pipe, self.prompt, self.spec.negative_prompt, embeddings=self.words
        )
        return prompts.kwargs()

    def cancelled(self) -> bool:
        """Whether its requester asked to cancel (checked once per step)."""
        check = self.request.should_cancel
        return check is not None and check()

    def progress(self, *, images: int, steps_done: int) -> None:
        """Tell its requester: ``images`` of its images are ``steps_done`` steps into a call."""
        if self.request.on_progress is not None:
            steps = self.spec.steps
            self.request.on_progress(
                self.finished * steps + steps_done * images, steps * self.spec.count
            )

    def outcome(
        self, *, load_s: float, render_s: float, total_s: float, device: str
    ) -> JobResult | Exception:
        """Its result, or why it has none."""
        if self.ended is not None:
            return self.ended
        if self.blank:
            sentence = finite.blank_sentence(seeds=self.blank, count=self.spec.count)
            if not self.images:
                return BlankImageError(sentence)
            if self.request.on_note is not None:
                self.request.on_note(sentence)
        return JobResult(
            job_id=self.spec.id,
            model=self.spec.model,
            images=sorted(self.images, key=lambda image: image.index),
            load_s=round(load_s, 3),
            render_s=round(render_s, 3),
            total_s=round(total_s, 3),
            device=device,
        )

    def keep(
        self,
        pipe: Any,
        index: int,
        pixels: Any,
        *,
        store: ArtifactStore,
        rerender: RerenderFn | None = None,
    ) -> None:
        """Store image ``index`` from its float pixels, or count it left out (None), with
        its QA verdict (``engine.qa``). Under the ``rerender`` policy a flagged image is
        rendered once more from a new seed by ``rerender(seed)`` and that one is kept,
        flagged or not (never a third render); the first one's seed and flags are kept
        with it. A re-render left out as non-finite keeps the first image."""
        if pixels is None:
            self.blank[index] = self.spec.image_seed(index)
            return
        seed, qa = self.spec.image_seed(index), self.qa
        image = self._picture(pipe, pixels)
        verdict = qa.assess(index, image) if qa is not None else None
        first = None
        if qa is not None and verdict is not None and verdict.flags and qa.rerenders and rerender:
            new_seed = rerender_seed(self.spec.id, index, seed)
            again = rerender(new_seed)
            if again is not None:
                first = {"seed": seed, "flags": verdict.flags}
                seed, image = new_seed, self._picture(pipe, again)
                verdict = qa.assess(index, image)
        if qa is not None:
            qa.keep(index, verdict)
        self.images.append(
            store_image(
                self.spec,
                index,
                image,
                prompt=self.prompt,
                store=store,
                hashes=self.hashes,
                seed=seed,
                verdict=verdict,
                rerendered_from=first,
            )
        )

    def _picture(self, pipe: Any, pixels: Any) -> Any:
        """The PIL image of float pixels; inpainting's repainted area over its input."""
        image = pipe.image_processor.numpy_to_pil(pixels)[0]
        if self.spec.mode is Mode.inpaint:
            assert self.inputs.init is not None and self.inputs.mask is not None
            image = overlay(self.inputs.init, image, self.inputs.mask, blur=self.spec.mask_blur)
        return image

    def label(self, index: int) -> str:
        """Image ``index`` in log lines."""
        return f"job {self.spec.id}: image {index}"


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
    the control image turned into its guide (canny edges); an upscale's source at its own
    size (:func:`upscale_source`)."""
    data: dict[str, bytes] = {}
    for role, artifact_id in spec.input_images().items():
        try:
            data[role] = store.get(artifact_id)
        except ArtifactNotFoundError:
            raise SpecError(
                f"the {role} image of this job is no longer stored; attach it again"
            ) from None
    if spec.mode is Mode.upscale:
        return PreparedInputs(init=upscale_source(spec, data["init"], cache=cache))
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


def upscale_source(spec: JobSpec, data: bytes, *, cache: PipelineCache) -> Image.Image:
    """An upscale's source image: decoded with every input's checks (a bomb is refused at
    its header), at its own size, which must have the output's shape: the upscale enlarges
    it, it is not fitted to the output."""
    source = unfitted(
        data, label="the image to upscale", max_pixels=cache.settings.limits.max_input_pixels
    )
    output = (spec.width, spec.height)
    if not same_shape(source.size, output):
        raise SpecError(
            f"the image to upscale is {source.width}x{source.height} but this upscale makes "
            f"{spec.width}x{spec.height}, another shape; upscale the image from its own post"
        )
    return source


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


def store_image(
    spec: JobSpec,
    index: int,
    image: Any,
    *,
    prompt: str,
    store: ArtifactStore,
    hashes: metadata.ResourceHashes | None = None,
    seed: int | None = None,
    verdict: Verdict | None = None,
    rerendered_from: dict[str, Any] | None = None,
) -> ImageResult:
    """Store image ``index`` of ``spec`` as a PNG with its ``parameters`` and ``proofroom``
    chunks, and its QA (``verdict``; ``rerendered_from``: the first render's seed and flags)
    in both the PNG and the artifact's metadata. ``seed``: the one it was rendered from,
    when not its own (a QA re-render)."""
    seed = spec.image_seed(index) if seed is None else seed
    lineage: dict[str, Any] = {
        "spec": spec.model_dump(mode="json"),
        "index": index,
        "seed": seed,
        "prompt": prompt,
    }
    link = metadata.upscale_link(spec, seed=seed)
    if link is not None:
        lineage["upscale"] = link
    flags = verdict.flags if verdict is not None else []
    if verdict is not None:
        lineage["qa"] = verdict.record()
        if rerendered_from is not None:
            lineage["qa"]["rerendered_from"] = rerendered_from
    png = metadata.png_with_parameters(
        image,
        metadata.parameters_for(spec, index, prompt=prompt, hashes=hashes, seed=seed),
        proofroom=lineage,
    )
    meta = lineage_meta(spec, index=index, seed=seed)
    if "qa" in lineage:
        meta["qa"] = lineage["qa"]
    artifact_id = store.put(png, suffix=".png", meta=meta)
    return ImageResult(
        index=index,
        seed=seed,
        artifact_id=artifact_id,
        width=image.width,
        height=image.height,
        flags=flags,
        rerendered_from=rerendered_from,
    )
