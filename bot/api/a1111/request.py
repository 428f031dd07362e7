"""A ``/sdapi/v1/txt2img`` or ``/img2img`` body in Proofroom's terms. Pure: no HTTP, no Redis.

:class:`Txt2ImgPayload`, :class:`Img2ImgPayload`: A1111's field names and defaults, unknown
fields ignored as A1111's own extensions send many. :func:`to_request` makes of one the
``ImagineRequest`` that chat commands make, plus the images by role; the A1111 names in it
cross through the catalog (``bot.api.a1111.names``). Anything refused is a
:class:`~engine.errors.UserError` with a sentence (the routes answer it with a 422).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import ImageOps
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.api.a1111.names import model_name, prompt_loras, sampler_name
from bot.api.limits import decode_image
from bot.grammar.parse import ImagineRequest
from engine.catalog import Catalog
from engine.errors import SpecError
from engine.inputs import decode, to_mask


class A1111Payload(BaseModel):
    """The fields txt2img and img2img share, as A1111 names them. None (A1111 accepts null
    for every field) means "the default": the model's catalog value, not A1111's 512x512 and
    50 steps, because the catalog knows what each model renders well."""

    model_config = ConfigDict(extra="ignore")

    prompt: str | None = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int | None = -1
    sampler_name: str | None = None
    sampler_index: str | None = None  # A1111's older name of sampler_name
    scheduler: str | None = None
    batch_size: int | None = 1
    n_iter: int | None = 1
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    override_settings: dict[str, Any] | None = None
    enable_hr: bool | None = False
    script_name: str | None = None
    send_images: bool | None = True
    save_images: bool | None = False


class Txt2ImgPayload(A1111Payload):
    """The body of ``POST /sdapi/v1/txt2img``."""


class Img2ImgPayload(A1111Payload):
    """The body of ``POST /sdapi/v1/img2img``: ``init_images`` (base64, one), ``mask``
    (white = repaint) for inpainting, ``denoising_strength``; ``mask_blur`` and
    ``inpainting_fill`` are accepted and left to the project's inpainting."""

    init_images: list[str] | None = None
    mask: str | None = None
    denoising_strength: float | None = None
    mask_blur: int | None = None
    inpainting_fill: int | None = None
    inpainting_mask_invert: int | None = 0
    include_init_images: bool | None = False


@dataclass(frozen=True)
class MappedRequest:
    """An A1111 request in Proofroom's terms: the request, and its images by the roles
    ``bot.api.jobs.ApiJobs.submit`` takes (``image``: the starting image, ``mask``), decoded
    from base64 (``bot.api.limits``) but not yet checked as images (``submit`` checks them like attachments)."""

    request: ImagineRequest
    images: Mapping[str, bytes] = field(default_factory=dict)


def read_payload(model: type[A1111Payload], body: object) -> A1111Payload:
    """``body`` (parsed JSON) as ``model``; :class:`SpecError` with one sentence per bad
    field, e.g. "steps: Input should be a valid integer"."""
    if not isinstance(body, dict):
        raise SpecError("the request body must be a JSON object of A1111's fields")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise SpecError("; ".join(problems)) from None


def to_request(
    payload: A1111Payload,
    *,
    catalog: Catalog,
    default_model: str | None = None,
    max_image_bytes: int = 10 * 2**20,
    max_input_pixels: int = 2**24,
) -> MappedRequest:
    """The ``ImagineRequest`` (and images) for ``payload``. ``default_model``: the model when
    the payload names none (the API key's, ``POST /sdapi/v1/options``; None: the service's).
    ``max_image_bytes``: the largest image decoded from base64 (``bot.api.limits``);
    ``max_input_pixels``: the largest mask decoded here, to invert it."""
    if payload.enable_hr:
        raise SpecError(
            "hires fix (enable_hr) is not available here; ask for the size you want with "
            "width and height"
        )
    if payload.script_name:
        raise SpecError(f"A1111 scripts are not available here; leave out `{payload.script_name}`")
    checkpoint = (payload.override_settings or {}).get("sd_model_checkpoint")
    model = model_name(catalog, str(checkpoint)) if checkpoint else default_model
    prompt, loras = prompt_loras(payload.prompt or "", catalog)
    size: tuple[int, int] | None = None
    if payload.width is not None or payload.height is not None:
        # One side given: the other is the model's (or, not knowing the model, the same).
        entry = catalog.model(model) if model else None
        width = payload.width or (entry.width if entry else payload.height) or 0
        height = payload.height or (entry.height if entry else payload.width) or 0
        size = (width, height)
    seed = payload.seed if payload.seed is not None and payload.seed >= 0 else None
    fields: dict[str, Any] = {}
    images: dict[str, bytes] = {}
    if isinstance(payload, Img2ImgPayload):
        images = _img2img_images(
            payload, max_image_bytes=max_image_bytes, max_input_pixels=max_input_pixels
        )
        fields["strength"] = payload.denoising_strength
    request = ImagineRequest(
        prompt=prompt,
        negative=payload.negative_prompt or None,
        seed=seed,
        count=(payload.batch_size or 1) * (payload.n_iter or 1),
        size=size,
        steps=payload.steps,
        cfg=payload.cfg_scale,
        sampler=sampler_name(payload.sampler_name or payload.sampler_index, payload.scheduler),
        model=model,
        loras=loras,
        **fields,
    )
    return MappedRequest(request, images)


def _img2img_images(
    payload: Img2ImgPayload, *, max_image_bytes: int, max_input_pixels: int
) -> dict[str, bytes]:
    given = [image for image in payload.init_images or [] if image]
    if not given:
        raise SpecError("img2img needs an image to start from: put it in init_images (base64)")
    if len(given) > 1:
        raise SpecError(
            f"init_images has {len(given)} images; send one per request (batch_size makes "
            "several images from it)"
        )
    images = {"image": decode_image(given[0], field="init_images[0]", max_bytes=max_image_bytes)}
    if payload.mask:
        mask = decode_image(payload.mask, field="mask", max_bytes=max_image_bytes)
        if payload.inpainting_mask_invert:
            mask = _inverted(mask, max_pixels=max_input_pixels)
        images["mask"] = mask
    return images


def _inverted(mask: bytes, *, max_pixels: int) -> bytes:
    """``mask`` with keep and repaint swapped (``inpainting_mask_invert: 1``), as a PNG;
    checked as every input is before it is decoded."""
    with decode(mask, label="the mask", max_pixels=max_pixels) as image:
        flipped = ImageOps.invert(to_mask(image))
    buffer = io.BytesIO()
    flipped.save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "A1111Payload",
    "Img2ImgPayload",
    "MappedRequest",
    "Txt2ImgPayload",
    "read_payload",
    "to_request",
]
