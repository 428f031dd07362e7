"""Image metadata: A1111's ``parameters`` text (write and parse) and our lineage chunk.

The ``parameters`` PNG text chunk uses A1111's layout so that A1111, ComfyUI, Civitai
and friends read our images::

    <prompt>
    Negative prompt: <negative>
    Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 12345, Size: 512x512, Model: sd15

With the files' hashes as A1111 writes them (:class:`ResourceHashes`, computed by
``engine.file_hashes`` when the worker loads the files): ``Model hash: <10 hex>`` right
before ``Model``, and at the end ``Lora hashes: "name: <12 hex>, ..."`` and
``TI hashes: "name: <12 hex>, ..."``; a model without a local file (built-in, Hub) has none.

A second chunk, ``proofroom``, holds the full job spec as JSON (job id, template,
variables, parent), so nothing that made the image is lost, and its QA (``qa``: scores,
flags, and the first render's seed and flags when it was re-rendered; ``engine.qa``). An
upscale's chunk also has ``upscale`` (:func:`upscale_link`): its parent image and how it
was enlarged; its ``parameters`` say what A1111's "SD upscale" writes (``Denoising
strength``, ``SD upscale overlap``, ``SD upscale upscaler``), with ``Size`` the output's.
No torch here.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image, PngImagePlugin

if TYPE_CHECKING:
    from engine.spec import JobSpec

PARAMETERS_KEY = "parameters"
PROOFROOM_KEY = "proofroom"
NEGATIVE_PREFIX = "Negative prompt:"
# A1111's names of the upscalers an upscale's first step uses (``engine.upscale``).
UPSCALER_NAMES = {"lanczos": "Lanczos"}
# One ``key: value`` field of the settings line; a value is JSON-quoted or runs to a comma.
_FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def quote(value: object) -> str:
    """A1111 quoting: values containing ``,`` ``:`` or a newline become JSON strings."""
    text = str(value)
    if not any(c in text for c in ",:\n"):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """Undo :func:`quote`; anything that is not valid JSON is returned as is."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except json.JSONDecodeError:
            pass
    return text


@dataclass(frozen=True)
class ResourceHashes:
    """A1111's short hashes of the files an image was made with: ``model`` (10 hex digits,
    None without a local file), ``loras`` and ``embeddings`` by the name written in the
    image (12 hex digits each). See ``engine.file_hashes`` for how each is computed."""

    model: str | None = None
    loras: Mapping[str, str] = field(default_factory=dict)
    embeddings: Mapping[str, str] = field(default_factory=dict)


def hash_list(hashes: Mapping[str, str]) -> str:
    """``name: hash, name2: hash`` as A1111 writes ``Lora hashes`` and ``TI hashes``: each
    name without ``:`` and ``,``, entries without a hash left out (quoted by :func:`quote`)."""
    return ", ".join(
        f"{name.replace(':', '').replace(',', '')}: {short}"
        for name, short in hashes.items()
        if short
    )


def parse_hash_list(text: str) -> dict[str, str]:
    """``{name: hash}`` from an unquoted ``Lora hashes`` / ``TI hashes`` value."""
    pairs = (item.rpartition(":") for item in text.split(","))
    return {name.strip(): short.strip() for name, _, short in pairs if name.strip()}


def format_parameters(
    *,
    prompt: str,
    negative_prompt: str = "",
    steps: int,
    sampler: str,
    cfg_scale: float,
    seed: int,
    width: int,
    height: int,
    model: str | None = None,
    loras: Sequence[tuple[str, float]] = (),
    extra: Mapping[str, object] | None = None,
    model_hash: str | None = None,
    lora_hashes: Mapping[str, str] | None = None,
    embedding_hashes: Mapping[str, str] | None = None,
) -> str:
    """The A1111 ``parameters`` text. ``loras`` is written as ``Lora: "name:0.8, other:1"``.
    ``model_hash`` goes right before ``Model`` (as A1111's ``create_infotext`` puts it),
    ``lora_hashes`` and ``embedding_hashes`` (``{name: short hash}``) last, as
    ``Lora hashes`` and ``TI hashes``; empty or None: no field."""
    fields: dict[str, object] = {
        "Steps": steps,
        "Sampler": sampler,
        "CFG scale": f"{cfg_scale:g}",
        "Seed": seed,
        "Size": f"{width}x{height}",
    }
    if model_hash:
        fields["Model hash"] = model_hash
    if model:
        fields["Model"] = model
    if loras:
        fields["Lora"] = ", ".join(f"{name}:{weight:g}" for name, weight in loras)
    fields.update(extra or {})
    for key, hashes in (("Lora hashes", lora_hashes), ("TI hashes", embedding_hashes)):
        if hashes and hash_list(hashes):
            fields[key] = hash_list(hashes)
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    lines.append(", ".join(f"{key}: {quote(value)}" for key, value in fields.items()))
    return "\n".join(lines)


def parameters_for(
    spec: JobSpec,
    index: int,
    *,
    prompt: str | None = None,
    hashes: ResourceHashes | None = None,
    seed: int | None = None,
) -> str:
    """The ``parameters`` text of image ``index`` of ``spec``; ``prompt`` is the prompt
    actually encoded (with LoRA trigger words) when it differs from the spec's; ``hashes``:
    those of the files it was rendered with, as the worker found them; ``seed``: the one it
    was rendered from when not its own (a QA re-render, ``engine.qa``)."""
    hashes = hashes or ResourceHashes()
    return format_parameters(
        prompt=spec.prompt if prompt is None else prompt,
        negative_prompt=spec.negative_prompt,
        steps=spec.steps,
        sampler=spec.sampler,
        cfg_scale=spec.cfg_scale,
        seed=spec.image_seed(index) if seed is None else seed,
        width=spec.width,
        height=spec.height,
        model=spec.model,
        loras=[(ref.name, ref.weight) for ref in spec.loras],
        extra=_mode_fields(spec),
        model_hash=hashes.model,
        lora_hashes=hashes.loras,
        embedding_hashes=hashes.embeddings,
    )


def _mode_fields(spec: JobSpec) -> dict[str, object]:
    """A1111's own names for the image-to-image settings, so its readers show them."""
    fields: dict[str, object] = {}
    if spec.mode in ("img2img", "inpaint", "upscale") and spec.strength is not None:
        fields["Denoising strength"] = spec.strength
    if spec.mode == "upscale":  # as A1111's "SD upscale" script writes them
        fields["SD upscale overlap"] = spec.tile_overlap
        fields["SD upscale upscaler"] = UPSCALER_NAMES.get(spec.upscaler, spec.upscaler)
    if spec.mode == "inpaint":
        fields["Mask blur"] = spec.mask_blur
    if spec.mode == "controlnet":
        fields["ControlNet"] = (
            f"{spec.controlnet or spec.control_type}, weight {spec.control_scale}, "
            f"guidance {spec.control_start}-{spec.control_end}"
        )
    return fields


def upscale_link(spec: JobSpec, *, seed: int | None = None) -> dict[str, Any] | None:
    """The ``upscale`` entry of the ``proofroom`` chunk: the link from an upscale to the
    image it enlarged (parent job and image index) and how (seed, strength, scale, tile
    size, overlap, upscaler); None for any other job."""
    if spec.mode != "upscale":
        return None
    parent_job, _, parent_index = (spec.parent or "").rpartition("/")
    return {
        "parent_job": parent_job or None,
        "parent_index": int(parent_index) if parent_index.isdigit() else None,
        "source": spec.init_image,
        "seed": spec.seed if seed is None else seed,
        "strength": spec.strength,
        "scale": spec.scale,
        "tile_size": spec.tile_size,
        "tile_overlap": spec.tile_overlap,
        "upscaler": spec.upscaler,
    }


def parse_parameters(text: str) -> dict[str, str]:
    """Parse A1111 ``parameters`` text into ``{"Prompt", "Negative prompt", "Steps", ...}``.

    The settings line is the last line starting with ``Steps: ``; the lines before it
    are the prompt, up to a line starting with ``Negative prompt:``. Values are
    unquoted strings (``Lora hashes`` and ``TI hashes`` too: :func:`parse_hash_list` splits
    them); ``Size`` is also split into ``Size-1`` and ``Size-2`` as A1111 does.
    """
    lines = text.strip("\n").split("\n")
    settings_at = max(
        (i for i, line in enumerate(lines) if line.startswith("Steps: ")), default=None
    )
    head = lines if settings_at is None else lines[:settings_at]
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in head:
        if negative is None and line.startswith(NEGATIVE_PREFIX):
            negative = [line[len(NEGATIVE_PREFIX) :].strip()]
        elif negative is None:
            prompt.append(line)
        else:
            negative.append(line)
    result = {"Prompt": "\n".join(prompt).strip(), "Negative prompt": "\n".join(negative or [])}
    if settings_at is not None:
        for key, value in _FIELD.findall(lines[settings_at]):
            result[key.strip()] = unquote(value.strip())
    width, _, height = result.get("Size", "").partition("x")
    if width.isdigit() and height.isdigit():
        result["Size-1"], result["Size-2"] = width, height
    return result


def spec_fields(params: Mapping[str, str]) -> dict[str, Any]:
    """``JobSpec`` keyword arguments from parsed parameters (for "render this PNG again")."""
    fields: dict[str, Any] = {
        "prompt": params.get("Prompt", ""),
        "negative_prompt": params.get("Negative prompt", ""),
    }
    converters = {"Steps": ("steps", int), "CFG scale": ("cfg_scale", float), "Seed": ("seed", int)}
    for key, (name, convert) in converters.items():
        if key in params:
            fields[name] = convert(params[key])
    for key, name in (("Sampler", "sampler"), ("Model", "model")):
        if key in params:
            fields[name] = params[key]
    if "Size-1" in params:
        fields["width"], fields["height"] = int(params["Size-1"]), int(params["Size-2"])
    if params.get("Lora"):
        pairs = (item.strip().rpartition(":") for item in params["Lora"].split(","))
        fields["loras"] = [{"name": n, "weight": float(w)} for n, _, w in pairs if n]
    return fields


def png_with_parameters(
    image: Image.Image, text: str, *, proofroom: Mapping[str, Any] | None = None
) -> bytes:
    """Encode ``image`` as PNG with the ``parameters`` chunk and optional ``proofroom`` JSON."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, text)  # Pillow switches to iTXt for non-Latin-1 text
    if proofroom is not None:
        info.add_text(PROOFROOM_KEY, json.dumps(proofroom, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_parameters(png: bytes) -> str | None:
    """The ``parameters`` text of a PNG, or None when it has none."""
    return _text_chunks(png).get(PARAMETERS_KEY)


def read_proofroom(png: bytes) -> dict[str, Any] | None:
    """The ``proofroom`` lineage JSON of a PNG, or None when it has none."""
    raw = _text_chunks(png).get(PROOFROOM_KEY)
    return json.loads(raw) if raw else None


def _text_chunks(png: bytes) -> dict[str, str]:
    with Image.open(io.BytesIO(png)) as image:
        return dict(getattr(image, "text", {}))
