"""The ``/imagine`` flags: one table that the grammar, ``/imagine help`` and the
"did you mean" suggestions all read, so they cannot disagree; and the conversion of each
flag's value, with the sentence to show when it does not convert."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from engine.catalog import MAX_LORA_WEIGHT, Catalog
from engine.errors import UserError
from engine.spec import SAMPLERS

MAX_RATIO = 4  # wider than 4:1 gives SD models stretched, repeated subjects
_INT = re.compile(r"^[+-]?[0-9]{1,12}$")
_FLOAT = re.compile(r"^[+-]?([0-9]{1,9}(\.[0-9]{0,9})?|\.[0-9]{1,9})$")
_RATIO = re.compile(r"^([0-9]{1,4}):([0-9]{1,4})$")
_SIZE = re.compile(r"^([0-9]{1,5})\s*[x\u00d7X*]\s*([0-9]{1,5})$")

Kind = Literal["text", "int", "float", "ratio", "size", "sampler", "model", "lora", "word"]


@dataclass(frozen=True)
class LoraRequest:
    """A LoRA asked for by name; ``weight`` None means the catalog's default weight."""

    name: str
    weight: float | None = None


@dataclass(frozen=True)
class Flag:
    """One flag. ``field`` names the ``ImagineRequest`` field it fills (or the key in
    ``ImagineRequest.flags`` when ``reserved``: understood now, acted on by a later workflow)."""

    name: str
    kind: Kind
    field: str
    example: str
    help: str
    aliases: tuple[str, ...] = ()
    reserved: bool = False


FLAGS: tuple[Flag, ...] = (
    Flag(
        "no",
        "text",
        "negative",
        "--no text, watermark",
        "what to keep out of the image",
        aliases=("neg", "negative"),
    ),
    Flag("seed", "int", "seed", "--seed 12345", "seed of the first image (image k uses seed+k)"),
    Flag("n", "int", "count", "--n 4", "how many images", aliases=("count", "batch")),
    Flag(
        "ar",
        "ratio",
        "aspect",
        "--ar 3:2",
        "aspect ratio W:H at the model's usual size",
        aliases=("aspect",),
    ),
    Flag("size", "size", "size", "--size 768x512", "exact width x height (multiples of 8)"),
    Flag("steps", "int", "steps", "--steps 30", "sampling steps"),
    Flag(
        "cfg",
        "float",
        "cfg",
        "--cfg 7",
        "how closely to follow the prompt (CFG scale)",
        aliases=("guidance", "scale"),
    ),
    Flag("sampler", "sampler", "sampler", '--sampler "DPM++ 2M Karras"', "sampler by A1111 name"),
    Flag("model", "model", "model", "--model sdxl", "model by name (`/imagine models`)"),
    Flag(
        "lora",
        "lora",
        "loras",
        "--lora tiny-style:0.8",
        "LoRA by name with an optional weight; repeat for more (`/imagine loras`)",
    ),
    Flag(
        "strength",
        "float",
        "strength",
        "--strength 0.6",
        "with an attached image: how far to move from it (0 keeps it, 1 ignores it)",
        aliases=("denoise", "denoising"),
    ),
    Flag(
        "mask",
        "word",
        "mask",
        "--mask mask.png",
        "which attached image is the inpainting mask (white = repaint)",
    ),
    Flag(
        "control",
        "word",
        "control",
        "--control canny",
        "guide the image with an attached one: canny (edges of a photo), depth, openpose "
        "or scribble (a prepared guide), or a ControlNet by name",
    ),
    Flag(
        "control-scale",
        "float",
        "control_scale",
        "--control-scale 0.8",
        "how strongly the ControlNet guide applies (0 to 2)",
    ),
    Flag(
        "variations",
        "int",
        "variations",
        "--variations 3",
        "images per CSV row of `/imagine batch` (variations of one image: \U0001f500)",
        reserved=True,
    ),
)

FLAG_BY_NAME: dict[str, Flag] = {
    alias: flag for flag in FLAGS for alias in (flag.name, *flag.aliases)
}

# Midjourney flags people type out of habit, with what to use here instead.
FOREIGN_FLAGS: dict[str, str] = {
    "v": "Proofroom picks models by name: use --model (see `/imagine models`)",
    "version": "Proofroom picks models by name: use --model (see `/imagine models`)",
    "niji": "Proofroom picks models by name: use --model (see `/imagine models`)",
    "q": "use --steps for more or less detail",
    "quality": "use --steps for more or less detail",
    "s": "use --cfg to follow the prompt more or less closely",
    "stylize": "use --cfg to follow the prompt more or less closely",
    "chaos": "use a different --seed, or react with \U0001f501 to re-render an image",
    "style": "use a template (`/imagine templates`) or a LoRA (--lora)",
    "w": "use --size WxH or --ar W:H",
    "width": "use --size WxH or --ar W:H",
    "h": "use --size WxH or --ar W:H",
    "height": "use --size WxH or --ar W:H",
    "aspect-ratio": "use --ar W:H",
}


def unknown_flag_message(name: str) -> str:
    """A sentence for ``--name`` that is not a flag: the closest real one, or a pointer."""
    if name.lower() in FOREIGN_FLAGS:
        return f"--{name} is not a Proofroom flag; {FOREIGN_FLAGS[name.lower()]}"
    close = difflib.get_close_matches(name.lower(), list(FLAG_BY_NAME), n=1, cutoff=0.6)
    if close:
        return f"unknown flag --{name}; did you mean --{FLAG_BY_NAME[close[0]].name}?"
    return f"unknown flag --{name}; `/imagine help` lists the flags"


def sampler_key(name: str) -> str:
    """Sampler names compared loosely: ``dpmpp_2m_karras`` is ``DPM++ 2M Karras``."""
    key = re.sub(r"[\s_\-]+", "", name.lower())
    return key.replace("dpmpp", "dpm++").removeprefix("k")


SAMPLER_BY_KEY = {sampler_key(name): name for name in SAMPLERS}


def convert(flag: Flag, arg: str, catalog: Catalog) -> object:
    """The value of ``--flag arg``; :class:`UserError` naming the flag and a valid example."""
    kind = flag.kind
    if kind == "int":
        if not _INT.match(arg):
            raise UserError(f"--{flag.name} needs a whole number, e.g. {flag.example}")
        return int(arg)
    if kind == "float":
        if not _FLOAT.match(arg):
            raise UserError(f"--{flag.name} needs a number, e.g. {flag.example}")
        return float(arg)
    if kind == "ratio":
        return ratio(arg)
    if kind == "size":
        match = _SIZE.match(arg)
        if not match:
            raise UserError(f"--size needs WxH like 768x512; you wrote `{arg}`")
        return int(match.group(1)), int(match.group(2))
    if kind == "sampler":
        sampler = SAMPLER_BY_KEY.get(sampler_key(arg))
        if sampler is None:
            close = difflib.get_close_matches(arg, SAMPLERS, n=1, cutoff=0.5)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise UserError(
                f"unknown sampler `{arg}`; {hint}choose one of: {', '.join(SAMPLERS)} "
                '(quote names with spaces: --sampler "DPM++ 2M Karras")'
            )
        return sampler
    if kind == "model":
        return catalog.model(arg).name
    if kind == "lora":
        name, _, weight = arg.partition(":")
        return lora_request(name, weight or None, catalog, shown=f"--lora {arg}")
    return arg  # text, word


def ratio(arg: str) -> tuple[int, int]:
    """``3:2`` -> ``(3, 2)``, within 1:MAX_RATIO and MAX_RATIO:1."""
    match = _RATIO.match(arg)
    if not match:
        raise UserError(f"--ar needs W:H like 3:2; you wrote `{arg}`")
    width, height = int(match.group(1)), int(match.group(2))
    if not width or not height:
        raise UserError(f"--ar needs two sides above zero, like 3:2; you wrote `{arg}`")
    if max(width / height, height / width) > MAX_RATIO:
        raise UserError(
            f"--ar {arg} is too stretched; use a ratio between 1:{MAX_RATIO} and {MAX_RATIO}:1"
        )
    return width, height


def lora_request(name: str, weight: str | None, catalog: Catalog, *, shown: str) -> LoraRequest:
    """A LoRA known to the catalog with a sane weight; ``shown`` is what the user typed."""
    name = name.strip()
    if not name:
        raise UserError(f"`{shown}` needs a LoRA name, e.g. --lora tiny-style:0.8")
    entry = catalog.lora(name)
    if weight is None:
        return LoraRequest(entry.name)
    weight = weight.strip()
    if not _FLOAT.match(weight):
        raise UserError(f"`{shown}`: the weight must be a number, like {entry.name}:0.8")
    value = float(weight)
    if abs(value) > MAX_LORA_WEIGHT:
        raise UserError(
            f"`{shown}`: LoRA weights go from -{MAX_LORA_WEIGHT:g} to {MAX_LORA_WEIGHT:g} "
            f"(0.6 to 1.0 is usual)"
        )
    return LoraRequest(entry.name, value)
