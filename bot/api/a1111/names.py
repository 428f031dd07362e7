"""A1111's names of the catalog's things: checkpoints (``sd_model_checkpoint``: a catalog
name, a file name or a title ``name.safetensors [hash]``), ``<lora:name:weight>`` tags in a
prompt, and sampler names with the ``scheduler`` newer A1111 clients send apart
(``DPM++ 2M`` + ``Karras``). Pure; a name the catalog does not know is a
:class:`~engine.errors.UserError` with a sentence.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from bot.grammar.flags import SAMPLER_BY_KEY, LoraRequest, lora_request, sampler_key

# The grammar's own reader of <lora:...> tags, so chat and the API read them alike; the rest
# of the grammar (flags, templates, meta words) does not apply to an A1111 prompt.
from bot.grammar.parse import take_lora_tags, tidy
from engine.catalog import Catalog
from engine.errors import SpecError
from engine.spec import SAMPLERS

# What A1111 clients send as ``scheduler`` when they leave the choice to the sampler.
AUTOMATIC = frozenset({"", "automatic"})
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".pth")
# The " [0123456789]" A1111 appends to a checkpoint's title: its short (or full) sha256.
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]\s*$")


def prompt_loras(prompt: str, catalog: Catalog) -> tuple[str, tuple[LoraRequest, ...]]:
    """The prompt without its ``<lora:name:weight>`` tags, and the LoRAs they name (known
    to the catalog, each once)."""
    text, tags = take_lora_tags(prompt)
    found: dict[str, tuple[LoraRequest, str]] = {}
    for name, weight, tag in tags:
        request = lora_request(name, weight, catalog, shown=tag)
        if request.name in found:
            raise SpecError(
                f"LoRA `{request.name}` is given twice (`{found[request.name][1]}` and "
                f"`{tag}`); keep one"
            )
        found[request.name] = (request, tag)
    return tidy(text), tuple(request for request, _ in found.values())


def sampler_name(sampler: str | None, scheduler: str | None) -> str | None:
    """The Proofroom sampler of an A1111 ``sampler_name`` and ``scheduler``: ``DPM++ 2M`` +
    ``Karras`` is ``DPM++ 2M Karras``; ``automatic`` keeps the sampler's own schedule, which
    for A1111's DPM++ samplers is Karras. None: the model's default sampler."""
    if not sampler or not sampler.strip():
        return None
    schedule = (scheduler or "").strip()
    if schedule.lower() in AUTOMATIC:
        candidates = [sampler, f"{sampler} Karras"]
    else:
        candidates = [f"{sampler} {schedule}"]
        if sampler_key(sampler).endswith(sampler_key(schedule)):
            candidates.append(sampler)  # "DPM++ 2M Karras" with scheduler "karras"
    for candidate in candidates:
        found = SAMPLER_BY_KEY.get(sampler_key(candidate))
        if found is not None:
            return found
    asked = f"`{sampler}`" + (
        f" with the `{schedule}` schedule" if candidates[0] != sampler else ""
    )
    raise SpecError(
        f"sampler {asked} is not available here; choose one of: {', '.join(SAMPLERS)} "
        "(GET /sdapi/v1/samplers lists them; scheduler: automatic or Karras)"
    )


def model_name(catalog: Catalog, checkpoint: str) -> str:
    """The catalog model that an A1111 ``sd_model_checkpoint`` names: its catalog name (the
    title ``/sdapi/v1/sd-models`` gives), its file name with or without the extension, or
    either with A1111's `` [hash]`` after it; :class:`CatalogError` with a suggestion."""
    text = _TITLE_HASH.sub("", checkpoint).strip()
    if text in catalog.models:
        return text
    base = PurePosixPath(text.replace("\\", "/")).name
    stem = base
    for suffix in CHECKPOINT_SUFFIXES:
        if base.lower().endswith(suffix):
            stem = base[: -len(suffix)]
    for entry in catalog.models.values():
        if text == entry.source or base == file_name(entry.source):
            return entry.name
    if stem in catalog.models:
        return stem
    for entry in catalog.models.values():
        own = file_name(entry.source)
        if own.lower().endswith(CHECKPOINT_SUFFIXES) and own.rsplit(".", 1)[0] == stem:
            return entry.name
    return catalog.model(stem).name  # raises, with "did you mean"


def file_name(source: str) -> str:
    """The file name at the end of a catalog ``source`` (a path with either slash)."""
    return PurePosixPath(source.replace("\\", "/")).name


__all__ = [
    "AUTOMATIC",
    "CHECKPOINT_SUFFIXES",
    "file_name",
    "model_name",
    "prompt_loras",
    "sampler_name",
]
