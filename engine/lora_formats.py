"""LoRA file formats, told apart by their tensor names alone: light (no torch), so a folder
scanner can classify a file from its safetensors header without loading a tensor.

Formats (``lora_format``):

- ``diffusers``: diffusers/peft keys (``unet.<module>.lora_A.weight``, ``text_encoder.``,
  ``text_encoder_2.``; also diffusers' older ``to_q_lora.down.weight`` spellings).
- ``kohya``: kohya-ss keys (``lora_unet_<module>``, ``lora_te_`` or, for SDXL, ``lora_te1_`` /
  ``lora_te2_``, each with ``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``) on the
  attention and MLP layers.
- ``locon``: the same layout reaching the convolution layers as well (ResNet blocks, down- and
  upsamplers): LyCORIS LoCon, or kohya-ss LoRA-C3Lier. Loads the same way as ``kohya``.
- ``loha``, ``lokr``, ``ia3`` (LyCORIS ``hada_``, ``lokr_``, ``on_input``), ``dora`` (kohya-ss
  layout with ``dora_scale``) and ``unknown``: Proofroom cannot load these (``refusal``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FORMATS = ("diffusers", "kohya", "locon", "loha", "lokr", "ia3", "dora", "unknown")
LOADABLE = frozenset({"diffusers", "kohya", "locon"})

KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
_KOHYA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
# A diffusers/peft key names its half of the pair with one of these.
_DIFFUSERS_MARKS = (
    ".lora_A.",
    ".lora_B.",
    ".lora.down.",
    ".lora.up.",
    "_lora.down.",
    "_lora.up.",
    ".lora_linear_layer.down.",
    ".lora_linear_layer.up.",
    ".lora_magnitude_vector",  # DoRA as peft saves it: peft loads it
)
_DIFFUSERS_DOWN = (".lora_A.", ".lora.down.", "_lora.down.", ".lora_linear_layer.down.")
# Modules of a UNet's ResNet blocks, samplers and embeddings, in the diffusers and the sgm
# (kohya-ss SDXL) spelling: a kohya-layout file touching any of them is a LoCon.
_CONV_MODULE = re.compile(
    r"_(resnets|downsamplers|upsamplers|in_layers|out_layers|emb_layers|skip_connection)_"
    r"|_(conv_in|conv_out|conv1|conv2|conv_shortcut|time_emb_proj|op|conv)$"
    r"|^lora_unet_(input_blocks_0_0|out_2|time_embed|time_embedding|label_emb)"
)


def lora_format(keys: Iterable[str]) -> str:
    """The format of a LoRA file whose tensors are named ``keys``: one of :data:`FORMATS`.
    Only :data:`LOADABLE` formats can be loaded."""
    keys = list(keys)
    if not keys:
        return "unknown"
    if any(".hada_" in k for k in keys):
        return "loha"
    if any(".lokr_" in k for k in keys):
        return "lokr"
    if all(k.startswith(KOHYA_PREFIXES) for k in keys):
        if any(k.endswith(".on_input") for k in keys):
            return "ia3"
        if any(k.endswith(".dora_scale") for k in keys):
            return "dora"
        if not all(k.endswith(_KOHYA_SUFFIXES) for k in keys):
            return "unknown"  # e.g. LoCon's CP/Tucker lora_mid, LyCORIS full or GLoRA
        if not any(k.endswith(".lora_down.weight") for k in keys):
            return "unknown"
        modules = {k.split(".", 1)[0] for k in keys}
        return "locon" if any(_CONV_MODULE.search(m) for m in modules) else "kohya"
    if all(any(mark in k for mark in _DIFFUSERS_MARKS) for k in keys):
        return "diffusers"
    return "unknown"


def module_count(keys: Iterable[str]) -> int:
    """How many layers a loadable LoRA file adapts (one down/A weight each)."""
    return sum(
        1
        for k in keys
        if k.endswith(".lora_down.weight")
        or (not k.startswith(KOHYA_PREFIXES) and any(m in k for m in _DIFFUSERS_DOWN))
    )


def refusal(name: str, keys: Iterable[str]) -> str | None:
    """Why LoRA ``name`` (tensors ``keys``) cannot be loaded, as a sentence for its user;
    ``None`` when its format is one Proofroom loads."""
    keys = list(keys)
    fmt = lora_format(keys)
    if fmt in LOADABLE:
        return None
    lycoris = {"loha": "LoHa", "lokr": "LoKr", "ia3": "(IA)³"}
    if fmt in lycoris:
        return (
            f"LoRA `{name}` is a LyCORIS {lycoris[fmt]} file, which Proofroom cannot load; "
            "use a LoRA or LoCon version of it"
        )
    if fmt == "dora":
        return (
            f"LoRA `{name}` is a kohya-ss DoRA file (`dora_scale`), which Proofroom cannot "
            "load; use a plain LoRA or LoCon version of it"
        )
    if any(k.endswith(".lora_mid.weight") for k in keys):
        return (
            f"LoRA `{name}` is a LyCORIS LoCon file with CP/Tucker-decomposed layers "
            "(`lora_mid`), which Proofroom cannot load; use a LoRA or a LoCon trained without "
            "CP/Tucker decomposition"
        )
    example = f" (tensors like `{sorted(keys)[0]}`)" if keys else " (it holds no tensors)"
    return (
        f"LoRA `{name}` is in a format Proofroom does not know{example}; it loads diffusers/peft "
        "and kohya-ss LoRAs and LyCORIS LoCon files: use one of those"
    )
