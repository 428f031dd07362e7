"""LoRA files in the layouts teams bring, made from the project's own tiny LoRAs
(``engine.tiny.lora_file``, diffusers/peft keys): the same tensors under kohya-ss names."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

LAYERS_PER_BLOCK = 2  # of both tiny UNets (engine.tiny): the sgm block numbering needs it


def to_kohya(
    tensors: dict[str, torch.Tensor],
    *,
    alpha: Callable[[int], float] = float,
    sdxl: bool = False,
    sgm: bool = False,
) -> dict[str, torch.Tensor]:
    """``tensors`` (peft layout) under kohya-ss names, with an ``alpha`` per module and the up
    weights scaled by rank / alpha, so the delta (up @ down * alpha / rank) is unchanged.
    ``alpha`` maps the rank to the alpha (default: alpha = rank, scale 1); ``sgm``: SDXL UNet
    blocks numbered the way kohya-ss trains SDXL (``input_blocks_4_1_...``)."""
    te = {"text_encoder": "lora_te1" if sdxl else "lora_te", "text_encoder_2": "lora_te2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        component, rest = key.split(".", 1)
        module, half, _ = rest.rsplit(".", 2)
        if component == "unet":
            name = "lora_unet_" + (sgm_module(module) if sgm else module)
        else:  # kohya-ss names CLIP modules as transformers did: text_model.encoder...
            name = f"{te[component]}_text_model." + module.removeprefix("text_model.")
        name = name.replace(".", "_")
        if half == "lora_A":
            rank = value.shape[0]
            out[f"{name}.lora_down.weight"] = value.clone()
            out[f"{name}.alpha"] = torch.tensor(alpha(rank))
        else:
            rank = value.shape[1]
            out[f"{name}.lora_up.weight"] = value * (rank / alpha(rank))
    return out


def sgm_module(module: str) -> str:
    """A diffusers UNet attention module under the sgm (LDM) block numbering."""
    step = LAYERS_PER_BLOCK + 1
    patterns: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (
            r"^down_blocks\.(\d+)\.attentions\.(\d+)\.",
            lambda m: f"input_blocks.{1 + int(m[1]) * step + int(m[2])}.1.",
        ),
        (r"^mid_block\.attentions\.0\.", lambda m: "middle_block.1."),
        (
            r"^up_blocks\.(\d+)\.attentions\.(\d+)\.",
            lambda m: f"output_blocks.{int(m[1]) * step + int(m[2])}.1.",
        ),
    ]
    for pattern, replace in patterns:
        renamed, found = re.subn(pattern, replace, module)
        if found:
            return renamed
    raise AssertionError(f"no sgm name for {module}")
