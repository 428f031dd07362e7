"""``JobSpec`` and ``JobResult``: the one contract between the chat side and the worker.

A spec is complete: concrete seed, resolved prompt, model and LoRA names with
weights. Given the spec and the catalog, every image can be rendered again.
No torch here: the chat processes build specs.
"""

from __future__ import annotations

import secrets
import time
import uuid
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, model_validator

from engine.errors import SpecError
from engine.samplers import SAMPLER_SCHEDULERS, unknown_sampler
from engine.settings import Fit, Limits
from engine.store import ArtifactNotFoundError, check_id

MAX_SEED = 2**32 - 1

# A1111 sampler names, in the order chat menus show them (``engine.samplers`` maps each to
# its diffusers scheduler).
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_SCHEDULERS)


class Mode(StrEnum):
    """What a job does: from text alone, from an init image, repainting under a mask,
    guided by a ControlNet control image, or enlarging an image with a tiled img2img pass
    that adds detail (``engine.upscale``)."""

    txt2img = "txt2img"
    img2img = "img2img"
    inpaint = "inpaint"
    controlnet = "controlnet"
    upscale = "upscale"


Priority = Literal["interactive", "bulk"]
ControlType = Literal["canny", "depth", "openpose", "scribble"]
CONTROL_TYPES: tuple[ControlType, ...] = get_args(ControlType)
DEFAULT_STRENGTH = 0.75  # A1111's default denoising strength
# An upscale's tiled pass adds detail without repainting: A1111's "SD upscale" is used at
# 0.2-0.4.
UPSCALE_STRENGTH = 0.3
MAX_CONTROL_SCALE = 2.0
MAX_MASK_BLUR = 64
UPSCALE_FACTORS = (2, 4)


class LoraRef(BaseModel):
    """A LoRA by catalog name with the weight this job applies."""

    name: str
    weight: float = 1.0


class JobSpec(BaseModel):
    """A fully resolved job. Build it with :func:`new_spec` so limits are checked."""

    # Also part of RQ job ids and Redis keys (``engine.queue``): letters, digits, _ and -.
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12], pattern=r"^[A-Za-z0-9_-]+$")
    mode: Mode = Mode.txt2img
    prompt: str
    negative_prompt: str = ""
    model: str
    loras: list[LoraRef] = Field(default_factory=list)
    sampler: str = "DPM++ 2M Karras"
    steps: int = 30
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    seed: int
    count: int = 1
    requested_by: str = ""
    priority: Priority = "interactive"
    # Lineage: where this job came from, so every image can be traced and re-made.
    template: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    parent: str | None = None  # e.g. "<job id>/<image index>" for a re-render
    origin: dict[str, str] = Field(default_factory=dict)  # platform, channel, thread, batch...
    created_at: float = Field(default_factory=time.time)
    # Inputs of img2img / inpaint / controlnet: artifact ids in the store (the bot uploads
    # them), so Redis only ever carries ids, never image bytes.
    init_image: str | None = None
    mask_image: str | None = None  # white = repaint, black = keep
    strength: float | None = None  # img2img / inpaint; filled with DEFAULT_STRENGTH
    input_fit: Fit = "crop"  # how inputs of another shape were fitted
    mask_blur: int = 4  # inpaint: soft edge, in pixels, inside the mask
    control_image: str | None = None
    control_type: ControlType | None = None
    controlnet: str | None = None  # catalog name of the ControlNet model
    control_scale: float = 1.0
    control_start: float = 0.0  # fraction of the steps where the guide starts applying
    control_end: float = 1.0
    # Upscale (``engine.upscale``): ``width`` x ``height`` is the output, ``scale`` times the
    # init image; the tiled pass runs on ``tile_size`` squares overlapping by ``tile_overlap``.
    scale: int | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    upscaler: str = "lanczos"  # the first step: "lanczos" or an upscaler model by name

    @model_validator(mode="after")
    def _default_strength(self) -> JobSpec:
        # A spec is complete: the strength an img2img job used is recorded, not implied.
        if self.strength is None and self.mode in (Mode.img2img, Mode.inpaint):
            self.strength = DEFAULT_STRENGTH
        if self.strength is None and self.mode is Mode.upscale:
            self.strength = UPSCALE_STRENGTH
        return self

    def input_images(self) -> dict[str, str]:
        """The artifact ids of this job's inputs by role (``init``, ``mask``, ``control``)."""
        roles = {"init": self.init_image, "mask": self.mask_image, "control": self.control_image}
        return {role: value for role, value in roles.items() if value}

    def image_seed(self, index: int) -> int:
        """Seed of image ``index``: seed + index, wrapped to the 32-bit range."""
        return (self.seed + index) % (MAX_SEED + 1)


class ImageResult(BaseModel):
    """One rendered image. ``flags``: what its automated QA found (``engine.qa.checks``: a
    list of ``{"check", "score", "threshold", "reason"}``; empty: it passed or QA is off);
    ``rerendered_from``: ``{"seed", "flags"}`` of its first render when QA had it rendered
    again with ``seed`` (the policy ``rerender``)."""

    index: int
    seed: int
    artifact_id: str
    width: int
    height: int
    flags: list[dict[str, Any]] = Field(default_factory=list)
    rerendered_from: dict[str, Any] | None = None


class JobResult(BaseModel):
    """What a finished job produced, and what it cost in time."""

    job_id: str
    model: str
    images: list[ImageResult]
    load_s: float = 0.0  # model load time paid by this job (0 when warm)
    render_s: float = 0.0
    total_s: float = 0.0
    device: str = "cpu"


def random_seed() -> int:
    """A fresh seed in the range every sampler and UI accepts."""
    return secrets.randbelow(MAX_SEED + 1)


def check_limits(spec: JobSpec, limits: Limits) -> None:
    """Raise :class:`SpecError` with an actionable sentence when ``spec`` breaks a limit."""
    _between("steps", spec.steps, limits.min_steps, limits.max_steps)
    _between("cfg", spec.cfg_scale, limits.min_cfg, limits.max_cfg)
    _between("count", spec.count, 1, limits.max_count)
    if spec.mode is Mode.upscale:
        _check_upscale(spec, limits)
    for side, value in (("width", spec.width), ("height", spec.height)):
        if spec.mode is not Mode.upscale:  # an upscale has its own output limit
            _between(side, value, limits.min_side, limits.max_side)
        if value % 8:
            lower, upper = value - value % 8, value - value % 8 + 8
            raise SpecError(
                f"{side} must be a multiple of 8; you asked for {value} (try {lower} or {upper})"
            )
    if spec.mode is not Mode.upscale and spec.width * spec.height > limits.max_pixels:
        raise SpecError(
            f"{spec.width}x{spec.height} is {spec.width * spec.height:,} pixels; the limit is "
            f"{limits.max_pixels:,} (for example {_square(limits.max_pixels)})"
        )
    if not spec.prompt.strip():
        raise SpecError("the prompt is empty; describe the image you want")
    if len(spec.prompt) > limits.max_prompt_chars:
        raise SpecError(
            f"the prompt is {len(spec.prompt)} characters; the limit is {limits.max_prompt_chars}"
        )
    if len(spec.negative_prompt) > limits.max_prompt_chars:
        raise SpecError(
            f"the negative prompt is {len(spec.negative_prompt)} characters; "
            f"the limit is {limits.max_prompt_chars}"
        )
    if spec.sampler not in SAMPLERS:
        raise unknown_sampler(spec.sampler)
    if not 0 <= spec.seed <= MAX_SEED:
        raise SpecError(f"seed must be between 0 and {MAX_SEED}; you asked for {spec.seed}")
    names = [ref.name for ref in spec.loras]
    if len(set(names)) != len(names):
        raise SpecError("each LoRA may be listed once; give one weight per LoRA")
    check_mode(spec)


def _check_upscale(spec: JobSpec, limits: Limits) -> None:
    if spec.scale not in UPSCALE_FACTORS:
        raise SpecError(
            f"an upscale is 2x or 4x (--scale 2 or --scale 4); you asked for {spec.scale}"
        )
    if spec.count != 1:
        raise SpecError("an upscale makes one image; upscale each image you want on its own")
    pixels = spec.width * spec.height
    if pixels > limits.max_upscale_pixels:
        side = _square(limits.max_upscale_pixels)
        raise SpecError(
            f"{spec.scale}x of this image is {spec.width}x{spec.height}, {pixels:,} pixels; "
            f"upscales here stop at {limits.max_upscale_pixels:,} (for example {side}): "
            "try --scale 2, or upscale a smaller image"
        )
    tile = spec.tile_size or 0
    _between("tile size", tile, limits.min_side, limits.max_side)
    if tile % 8:
        raise SpecError(f"the tile size must be a multiple of 8; it is {tile}")
    overlap = spec.tile_overlap if spec.tile_overlap is not None else -1
    _between("tile overlap", overlap, 0, tile // 2)


# What each input is called in a sentence, and which modes take it.
_INPUTS = {
    "init": ("a starting image", (Mode.img2img, Mode.inpaint, Mode.upscale)),
    "mask": ("a mask", (Mode.inpaint,)),
    "control": ("a control image", (Mode.controlnet,)),
}
_NEEDS = {
    (Mode.img2img, "init"): "img2img needs an init image; attach the image to start from",
    (Mode.inpaint, "init"): "inpainting needs the image to repaint; attach it with the mask",
    (Mode.inpaint, "mask"): (
        "inpainting needs a mask (white where the image should change, black where it stays); "
        "attach one with --mask"
    ),
    (Mode.controlnet, "control"): (
        "a ControlNet job needs a control image; attach the guide image (a photo for canny, "
        "or a prepared depth map, pose or scribble)"
    ),
}


def check_mode(spec: JobSpec) -> None:
    """Raise :class:`SpecError` when the mode's inputs and settings are missing or invalid."""
    images = spec.input_images()
    for role, artifact_id in images.items():
        what, modes = _INPUTS[role]
        if spec.mode not in modes:
            uses = " and ".join(m.value for m in modes)
            raise SpecError(f"{what} is used only by {uses} jobs, not by {spec.mode} jobs")
        try:
            check_id(artifact_id)
        except ArtifactNotFoundError:
            raise SpecError(f"{what} must be a stored image; `{artifact_id}` is not") from None
    for (mode, role), sentence in _NEEDS.items():
        if spec.mode is mode and role not in images:
            raise SpecError(sentence)
    if spec.mode is Mode.upscale and "init" not in images:
        raise SpecError("an upscale needs the image to enlarge; react \u2b06\ufe0f on an image")
    if spec.mode is not Mode.upscale and (spec.scale or spec.tile_size):
        raise SpecError("a scale and a tile size belong to upscales only")
    if spec.mode in (Mode.img2img, Mode.inpaint, Mode.upscale):
        assert spec.strength is not None  # filled by the model validator
        _between("strength", spec.strength, 0.0, 1.0)
    elif spec.strength is not None:
        raise SpecError(
            "strength says how far to move from a starting image; attach one (img2img) "
            "or leave --strength out"
        )
    _between("mask blur", spec.mask_blur, 0, MAX_MASK_BLUR)
    if spec.mode is not Mode.controlnet:
        if spec.control_type or spec.controlnet:
            raise SpecError("a control type needs a control image; attach the guide image")
        return
    if spec.control_type not in CONTROL_TYPES:
        raise SpecError(
            f"a ControlNet job needs a control type: {', '.join(CONTROL_TYPES)}; e.g. --control canny"
        )
    if not spec.controlnet:
        raise SpecError("a ControlNet job needs the name of a ControlNet model from the catalog")
    _between("control scale", spec.control_scale, 0.0, MAX_CONTROL_SCALE)
    _between("control start", spec.control_start, 0.0, 1.0)
    _between("control end", spec.control_end, 0.0, 1.0)
    if spec.control_start >= spec.control_end:
        raise SpecError(
            f"the control guide must start before it ends; you asked for start "
            f"{spec.control_start:g} and end {spec.control_end:g}"
        )


def new_spec(*, limits: Limits, seed: int | None = None, **fields: object) -> JobSpec:
    """Build a validated spec; a missing seed is drawn now and recorded in the spec."""
    spec = JobSpec(seed=random_seed() if seed is None else seed, **fields)  # type: ignore[arg-type]
    check_limits(spec, limits)
    return spec


def reseeded(
    spec: JobSpec,
    *,
    limits: Limits,
    parent: str,
    count: int | None = None,
    avoid: int | None = None,
) -> JobSpec:
    """The same job with a new id and a fresh seed (checked against ``limits`` again, which
    may have changed since): re-renders and batch retries. ``avoid``: a seed not to draw."""
    fields = spec.model_dump(exclude={"id", "seed", "count", "parent", "created_at"})
    seed = random_seed()
    if seed == avoid:  # one in four billion, but "a new seed" should be new
        seed = (seed + 1) % (MAX_SEED + 1)
    return new_spec(
        limits=limits,
        seed=seed,
        count=spec.count if count is None else count,
        parent=parent,
        **fields,  # without an id: JobSpec makes a new one
    )


def _between(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise SpecError(f"{name} must be between {low:g} and {high:g}; you asked for {shown}")


def _square(pixels: int) -> str:
    side = int(pixels**0.5) // 8 * 8
    return f"{side}x{side}"
