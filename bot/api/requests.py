"""The body of ``POST /v1/jobs``: the chat's flags as JSON fields, turned into the
``ImagineRequest`` the chat grammar makes (``bot.grammar``), with the grammar's own
conversions, so a sampler, size, ratio or LoRA is checked with the chat's sentences.

Fields: ``prompt`` or ``template`` (with ``variables``), ``negative``, ``seed``, ``n``,
``size`` ("768x512") or ``width`` + ``height``, or ``aspect`` ("3:2"), ``steps``, ``cfg``,
``sampler``, ``model``, ``loras`` ([{name, weight}]), ``strength``, ``control``,
``control_scale``, and base64 ``init_image``, ``mask_image``, ``control_image``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.api.limits import FieldError, decode_image
from bot.grammar.flags import FLAG_BY_NAME, LoraRequest, convert, lora_request, ratio
from bot.grammar.parse import ImagineRequest
from engine.catalog import Catalog
from engine.errors import UserError

# Request field -> the role of the image in ``ApiJobs.submit``.
IMAGE_FIELDS = {"init_image": "image", "mask_image": "mask", "control_image": "control"}


class LoraField(BaseModel):
    """A LoRA by catalog name; ``weight`` null: the catalog's default weight."""

    model_config = ConfigDict(extra="forbid")

    name: str
    weight: float | None = Field(default=None, allow_inf_nan=False)


class JobRequest(BaseModel):
    """``POST /v1/jobs``. Fields left out take the template's value, then the model's."""

    model_config = ConfigDict(extra="forbid", title="JobRequest")

    prompt: str = Field(default="", description="the prompt, or words added to the template's")
    template: str | None = Field(default=None, description="prompt template by name")
    variables: dict[str, str] = Field(default_factory=dict, description="template variables")
    negative: str | None = Field(default=None, description="what to keep out of the image")
    seed: int | None = Field(default=None, description="seed of the first image (k: seed+k)")
    n: int | None = Field(default=None, description="how many images")
    size: str | None = Field(default=None, description='exact size "WxH", e.g. "768x512"')
    width: int | None = Field(default=None, description="with height: exact size")
    height: int | None = None
    aspect: str | None = Field(default=None, description='aspect ratio "W:H" at the model size')
    steps: int | None = None
    cfg: float | None = Field(default=None, allow_inf_nan=False, description="CFG scale")
    sampler: str | None = Field(default=None, description='A1111 name, e.g. "DPM++ 2M Karras"')
    model: str | None = Field(default=None, description="model by catalog name")
    loras: list[LoraField] = Field(default_factory=list)
    strength: float | None = Field(
        default=None, allow_inf_nan=False, description="img2img/inpaint: how far to move"
    )
    control: str | None = Field(default=None, description="canny, depth, openpose, scribble")
    control_scale: float | None = Field(default=None, allow_inf_nan=False)
    init_image: str | None = Field(default=None, description="base64 PNG/JPEG/WebP to start from")
    mask_image: str | None = Field(default=None, description="base64 mask, white = repaint")
    control_image: str | None = Field(default=None, description="base64 ControlNet guide")


def parse_body(data: Any) -> JobRequest:
    """``data`` (parsed JSON) as a :class:`JobRequest`; :class:`FieldError` naming the first
    field that is wrong."""
    if not isinstance(data, dict):
        raise FieldError('the body must be a JSON object, e.g. {"prompt": "a red mug"}', field=None)
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        raise field_error(exc) from None


def field_error(exc: ValidationError) -> FieldError:
    """The first problem of a validation error as a sentence naming its field."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        return FieldError(f"`{field}` is not a field of this request", field=field)
    return FieldError(f"`{field}`: {first['msg'].lower()}", field=field)


def to_request(
    body: JobRequest, *, catalog: Catalog, max_image_bytes: int
) -> tuple[ImagineRequest, dict[str, bytes]]:
    """The chat request ``body`` makes and its images by role (decoded, not yet checked:
    ``ApiJobs.submit`` checks them like attachments)."""
    if not body.prompt.strip() and not body.template:
        raise FieldError(
            "describe the image you want in `prompt`, or name a `template`", field="prompt"
        )
    if body.variables and not body.template:
        raise FieldError("`variables` fill a template; name it in `template`", field="variables")
    size = _size(body)
    if size is not None and body.aspect is not None:
        raise FieldError("use either `aspect` or a size, not both", field="aspect")
    request = ImagineRequest(
        prompt=body.prompt.strip(),
        template=body.template,
        variables=dict(body.variables),
        negative=body.negative or None,
        seed=body.seed,
        count=body.n,
        aspect=_convert("aspect", lambda: ratio(body.aspect)) if body.aspect else None,
        size=size,
        steps=body.steps,
        cfg=body.cfg,
        sampler=_flag("sampler", body.sampler, catalog) if body.sampler else None,
        model=_flag("model", body.model, catalog) if body.model else None,
        loras=tuple(_lora(lora, catalog, i) for i, lora in enumerate(body.loras)),
        strength=body.strength,
        control=body.control,
        control_scale=body.control_scale,
    )
    images = {}
    for field, role in IMAGE_FIELDS.items():
        value = getattr(body, field)
        if value:
            images[role] = decode_image(value, field=field, max_bytes=max_image_bytes)
    return request, images


def _size(body: JobRequest) -> tuple[int, int] | None:
    if (body.width is None) != (body.height is None):
        raise FieldError(
            "`width` and `height` go together; give both, or neither for the model's size",
            field="width" if body.width is None else "height",
        )
    if body.size is not None and body.width is not None:
        raise FieldError("give `size` or `width` and `height`, not both", field="size")
    if body.width is not None and body.height is not None:
        return body.width, body.height
    if body.size is not None:
        value = _flag("size", body.size, None)
        assert isinstance(value, tuple)
        return value
    return None


def _flag(name: str, value: str, catalog: Catalog | None) -> Any:
    """``--name value`` converted as the chat converts it; its sentence names the field."""
    return _convert(name, lambda: convert(FLAG_BY_NAME[name], value, catalog))  # type: ignore[arg-type]


def _lora(lora: LoraField, catalog: Catalog, index: int) -> LoraRequest:
    weight = None if lora.weight is None else f"{lora.weight:.6f}"
    shown = lora.name if weight is None else f"{lora.name}:{lora.weight:g}"
    return _convert(f"loras.{index}", lambda: lora_request(lora.name, weight, catalog, shown=shown))


def _convert(field: str, make: Any) -> Any:
    try:
        return make()
    except FieldError:
        raise
    except UserError as exc:
        raise FieldError(exc.message, field=field) from None


__all__ = ["IMAGE_FIELDS", "JobRequest", "LoraField", "field_error", "parse_body", "to_request"]
