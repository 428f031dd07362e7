"""Jobs made from an image that already exists: its variations and its upscale
(Midjourney's V and U). Pure: the chat side builds these specs from a posted image.

A variation is img2img from the image at a low strength, with its job's prompt, LoRAs,
model and settings and new seeds: close to its parent, different in the details. The
``strong`` preset moves further, as Midjourney's "Vary (Strong)" does.

An upscale is the image enlarged ``scale`` times (Lanczos, or an upscaler model) and then
given detail by a tiled img2img pass at the model's native size (``engine.upscale``), from
the image's own seed, so that the chain parent -> upscale can be rendered again.

Both record their parent as ``<job id>/<image index>`` and the parent image as their init
image, so every link of the chain is in the spec and in the PNG's metadata.
"""

from __future__ import annotations

from typing import Literal

from engine.settings import Limits
from engine.spec import MAX_SEED, UPSCALE_STRENGTH, JobSpec, Mode, new_spec, random_seed

Strength = Literal["subtle", "strong"]
# img2img strength per preset: the subtle one keeps composition, colours and shapes; the
# strong one keeps the composition and repaints much of the rest.
VARY_STRENGTH: dict[Strength, float] = {"subtle": 0.35, "strong": 0.65}
# What a follow-up keeps of its parent's spec; inputs and mode-specific fields are its own.
_KEPT = (
    "prompt",
    "negative_prompt",
    "model",
    "loras",
    "sampler",
    "steps",
    "cfg_scale",
    "requested_by",
    "template",
    "variables",
    "origin",
)


def variation_spec(
    parent: JobSpec,
    *,
    index: int,
    artifact_id: str,
    width: int,
    height: int,
    limits: Limits,
    strength: Strength = "subtle",
    count: int = 4,
    seed: int | None = None,
) -> JobSpec:
    """``count`` variations of image ``index`` of ``parent`` (stored as ``artifact_id``,
    ``width`` x ``height``): img2img from it at the preset's strength, new seeds (``seed``
    and on; random by default), on the interactive queue."""
    return new_spec(
        limits=limits,
        seed=_fresh(seed, avoid=parent.image_seed(index)),
        count=count,
        mode=Mode.img2img,
        init_image=artifact_id,
        strength=VARY_STRENGTH[strength],
        width=width,
        height=height,
        parent=f"{parent.id}/{index}",
        priority="interactive",
        **_kept(parent),
    )


def upscale_spec(
    parent: JobSpec,
    *,
    index: int,
    artifact_id: str,
    width: int,
    height: int,
    scale: int,
    tile_size: int,
    limits: Limits,
    strength: float = UPSCALE_STRENGTH,
    upscaler: str = "lanczos",
) -> JobSpec:
    """Image ``index`` of ``parent`` (``width`` x ``height``) made ``scale`` times larger by
    a pass of ``tile_size`` tiles overlapping by a quarter tile, from the image's own seed."""
    return new_spec(
        limits=limits,
        seed=parent.image_seed(index),
        count=1,
        mode=Mode.upscale,
        init_image=artifact_id,
        strength=strength,
        width=width * scale,
        height=height * scale,
        scale=scale,
        tile_size=tile_size,
        tile_overlap=tile_overlap(tile_size),
        upscaler=upscaler,
        parent=f"{parent.id}/{index}",
        priority="interactive",
        **_kept(parent),
    )


def tile_overlap(tile_size: int) -> int:
    """The overlap of neighbouring tiles: a quarter tile, a multiple of 8, so the blend
    between two tiles is wide enough that no seam shows."""
    return max(8, tile_size // 4 // 8 * 8)


def _kept(parent: JobSpec) -> dict[str, object]:
    fields = parent.model_dump(include=set(_KEPT))
    # A batch row's label still says what the image shows; the batch itself is done with it.
    fields["origin"] = {key: value for key, value in parent.origin.items() if key == "label"}
    return fields


def _fresh(seed: int | None, *, avoid: int) -> int:
    if seed is not None:
        return seed
    drawn = random_seed()
    return drawn if drawn != avoid else (drawn + 1) % (MAX_SEED + 1)
