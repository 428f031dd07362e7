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
from typing import Literal

from pydantic import BaseModel, Field

from engine.errors import SpecError
from engine.settings import Limits

MAX_SEED = 2**32 - 1

SAMPLERS = (
    "Euler a",
    "Euler",
    "DPM++ 2M Karras",
    "DPM++ 2M SDE Karras",
    "DPM++ SDE Karras",
    "DDIM",
    "UniPC",
    "LMS",
    "Heun",
)


class Mode(StrEnum):
    """What a job does. Only ``txt2img`` is rendered today; the rest are reserved."""

    txt2img = "txt2img"
    img2img = "img2img"
    inpaint = "inpaint"
    controlnet = "controlnet"


Priority = Literal["interactive", "bulk"]


class LoraRef(BaseModel):
    """A LoRA by catalog name with the weight this job applies."""

    name: str
    weight: float = 1.0


class JobSpec(BaseModel):
    """A fully resolved job. Build it with :func:`new_spec` so limits are checked."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
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

    def image_seed(self, index: int) -> int:
        """Seed of image ``index``: seed + index, wrapped to the 32-bit range."""
        return (self.seed + index) % (MAX_SEED + 1)


class ImageResult(BaseModel):
    """One rendered image."""

    index: int
    seed: int
    artifact_id: str
    width: int
    height: int


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
    for side, value in (("width", spec.width), ("height", spec.height)):
        _between(side, value, limits.min_side, limits.max_side)
        if value % 8:
            lower, upper = value - value % 8, value - value % 8 + 8
            raise SpecError(
                f"{side} must be a multiple of 8; you asked for {value} (try {lower} or {upper})"
            )
    if spec.width * spec.height > limits.max_pixels:
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
        raise SpecError(f"unknown sampler `{spec.sampler}`; choose one of: {', '.join(SAMPLERS)}")
    if not 0 <= spec.seed <= MAX_SEED:
        raise SpecError(f"seed must be between 0 and {MAX_SEED}; you asked for {spec.seed}")


def new_spec(*, limits: Limits, seed: int | None = None, **fields: object) -> JobSpec:
    """Build a validated spec; a missing seed is drawn now and recorded in the spec."""
    spec = JobSpec(seed=random_seed() if seed is None else seed, **fields)  # type: ignore[arg-type]
    check_limits(spec, limits)
    return spec


def _between(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        raise SpecError(f"{name} must be between {low:g} and {high:g}; you asked for {shown}")


def _square(pixels: int) -> str:
    side = int(pixels**0.5) // 8 * 8
    return f"{side}x{side}"
