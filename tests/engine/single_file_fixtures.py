"""Single-file checkpoints made by converting the tiny models to the ORIGINAL (CompVis / SGM)
key layout, the way Civitai ships checkpoints: nothing is downloaded.

The key mapping follows diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``
and ``scripts/convert_diffusers_to_original_sdxl.py`` (Apache-2.0, (c) The HuggingFace Team),
generalised from their hard-coded four-block layout to the block types of the model at hand
(the tiny UNet has two blocks, an attention block first on the way up, and one resnet per
VAE level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

# (original, diffusers), replaced in this order.
_UNET_TOP = [
    ("time_embed.0.", "time_embedding.linear_1."),
    ("time_embed.2.", "time_embedding.linear_2."),
    ("label_emb.0.0.", "add_embedding.linear_1."),  # SDXL
    ("label_emb.0.2.", "add_embedding.linear_2."),
    ("input_blocks.0.0.", "conv_in."),
    ("out.0.", "conv_norm_out."),
    ("out.2.", "conv_out."),
]
_UNET_RESNET = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]
_VAE_ATTENTION = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v.")]
_VAE_ATTENTION += [("proj_out.", "to_out.0.")]
# OpenCLIP (original) <- transformers CLIP, inside one encoder layer.
_OPENCLIP_LAYER = [
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
    ("attn.out_proj", "self_attn.out_proj"),
]


def unet_prefixes(config: Any) -> list[tuple[str, str]]:
    """(original, diffusers) prefixes of every block of a UNet with ``config``."""
    layers = config.layers_per_block
    pairs: list[tuple[str, str]] = []
    n = 1
    for i, kind in enumerate(config.down_block_types):
        for j in range(layers):
            pairs.append((f"input_blocks.{n}.0.", f"down_blocks.{i}.resnets.{j}."))
            if kind.startswith("CrossAttn"):
                pairs.append((f"input_blocks.{n}.1.", f"down_blocks.{i}.attentions.{j}."))
            n += 1
        if i < len(config.down_block_types) - 1:
            pairs.append((f"input_blocks.{n}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            n += 1
    n = 0
    for i, kind in enumerate(config.up_block_types):
        attention = kind.startswith("CrossAttn")
        for j in range(layers + 1):
            pairs.append((f"output_blocks.{n}.0.", f"up_blocks.{i}.resnets.{j}."))
            if attention:
                pairs.append((f"output_blocks.{n}.1.", f"up_blocks.{i}.attentions.{j}."))
            n += 1
        if i < len(config.up_block_types) - 1:
            at = 2 if attention else 1
            pairs.append((f"output_blocks.{n - 1}.{at}.", f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    pairs += [(f"middle_block.{2 * j}.", f"mid_block.resnets.{j}.") for j in range(2)]
    return pairs


def convert_unet(unet: Any) -> dict[str, torch.Tensor]:
    """The UNet's weights under ``model.diffusion_model.`` in the original layout."""
    prefixes = unet_prefixes(unet.config)
    out = {}
    for key, value in unet.state_dict().items():
        new = key
        for original, diffusers in _UNET_TOP:
            if new.startswith(diffusers):
                new = original + new.removeprefix(diffusers)
        for original, diffusers in prefixes:
            if new.startswith(diffusers):
                rest = new.removeprefix(diffusers)
                if ".resnets." in diffusers:
                    for sd_part, hf_part in _UNET_RESNET:
                        rest = rest.replace(hf_part, sd_part)
                new = original + rest
                break
        out[f"model.diffusion_model.{new}"] = value
    return out


def convert_vae(vae: Any) -> dict[str, torch.Tensor]:
    """The VAE's weights under ``first_stage_model.`` in the original layout."""
    levels = len(vae.config.block_out_channels)
    pairs: list[tuple[str, str]] = [
        ("nin_shortcut", "conv_shortcut"),
        ("norm_out", "conv_norm_out"),
        ("mid.attn_1.", "mid_block.attentions.0."),
        ("mid.block_1.", "mid_block.resnets.0."),
        ("mid.block_2.", "mid_block.resnets.1."),
    ]
    for i in range(levels):
        pairs.append((f"encoder.down.{i}.block.", f"encoder.down_blocks.{i}.resnets."))
        pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
        up = levels - 1 - i  # decoder levels are numbered the other way round
        pairs.append((f"decoder.up.{up}.block.", f"decoder.up_blocks.{i}.resnets."))
        pairs.append((f"up.{up}.upsample.", f"up_blocks.{i}.upsamplers.0."))
    out = {}
    for key, value in vae.state_dict().items():
        new = key
        for original, diffusers in pairs:
            new = new.replace(diffusers, original)
        if ".attn_1." in new:
            head, rest = new.split(".attn_1.")
            for original, diffusers in _VAE_ATTENTION:
                if rest.startswith(diffusers):
                    rest = original + rest.removeprefix(diffusers)
            new = f"{head}.attn_1.{rest}"
            if value.ndim == 2:  # linear in diffusers, 1x1 convolution in the original
                value = value.reshape(*value.shape, 1, 1)
        out[f"first_stage_model.{new}"] = value
    return out


def convert_clip(encoder: Any, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder as the original checkpoints keep it (the transformers
    layout itself under ``prefix``, e.g. ``cond_stage_model.transformer.``)."""
    out = {}
    for key, value in encoder.state_dict().items():
        # transformers 5.6+ flattened CLIPTextModel; checkpoints say text_model.
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        out[prefix + name] = value
    return out


def convert_open_clip(encoder: Any, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder in the OpenCLIP layout (SD 2.x, SDXL's second
    encoder): fused q/k/v, ``resblocks``, a ``text_projection`` matrix (transposed)."""
    state = {
        (k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"): v
        for k, v in encoder.state_dict().items()
    }
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, list[torch.Tensor | None]]] = {}
    for key, value in state.items():
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
            continue
        if key.startswith("text_model.embeddings.token_embedding."):
            out[prefix + "token_embedding.weight"] = value
            continue
        if key.startswith("text_model.embeddings.position_embedding."):
            out[prefix + "positional_embedding"] = value
            continue
        if key.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + key.rsplit(".", 1)[1]] = value
            continue
        layer = key.removeprefix("text_model.encoder.layers.")
        number, rest = layer.split(".", 1)
        base = f"{prefix}transformer.resblocks.{number}."
        if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
            _, proj, kind = rest.split(".")
            slot = fused.setdefault(base, {}).setdefault(kind, [None, None, None])
            slot["qkv".index(proj[0])] = value
            continue
        for original, diffusers in _OPENCLIP_LAYER:
            rest = rest.replace(diffusers, original)
        out[base + rest] = value
    for base, kinds in fused.items():
        for kind, parts in kinds.items():
            assert all(p is not None for p in parts), f"missing q/k/v under {base}"
            out[f"{base}attn.in_proj_{kind}"] = torch.cat(parts)  # type: ignore[arg-type]
    return out


def sd15_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """An SD1.x-layout checkpoint of ``pipe`` (UNet, VAE, CLIP text encoder)."""
    return {
        **convert_unet(pipe.unet),
        **convert_vae(pipe.vae),
        **convert_clip(pipe.text_encoder, "cond_stage_model.transformer."),
    }


def sdxl_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """An SDXL-layout checkpoint of ``pipe`` (UNet, VAE, CLIP-L and OpenCLIP encoders)."""
    return {
        **convert_unet(pipe.unet),
        **convert_vae(pipe.vae),
        **convert_clip(pipe.text_encoder, "conditioner.embedders.0.transformer."),
        **convert_open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model."),
    }


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``state`` as a ``.safetensors`` file at ``path`` (contiguous copies, as the format wants)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    return path
