"""Small but telling model files for the drop-in folder tests: the real key names of each
layout (diffusers' ``single_file_utils.CHECKPOINT_KEY_NAMES``, kohya-ss sd-scripts, LyCORIS,
A1111 embeddings), only the tensors detection reads, with their real widths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

Shapes = dict[str, tuple[int, ...]]

UNET = "model.diffusion_model."
TO_K = "transformer_blocks.0.attn2.to_k.weight"
FIRST_STAGE: Shapes = {"first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3)}

SD15: Shapes = {
    UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    UNET + "input_blocks.1.1." + TO_K: (320, 768),
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    **FIRST_STAGE,
}
SD2: Shapes = {
    UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    UNET + "input_blocks.1.1." + TO_K: (320, 1024),
    "cond_stage_model.model.positional_embedding": (77, 1024),
    **FIRST_STAGE,
}
SDXL: Shapes = {
    UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    UNET + "input_blocks.4.1." + TO_K: (640, 2048),
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (
        77,
        768,
    ),
    "conditioner.embedders.1.model.positional_embedding": (77, 1280),
    **FIRST_STAGE,
}
# The SDXL refiner: OpenCLIP-G alone as embedder 0, a UNet attending to 1280-wide text.
REFINER: Shapes = {
    UNET + "input_blocks.0.0.weight": (384, 4, 3, 3),
    UNET + "input_blocks.4.1." + TO_K: (768, 1280),
    "conditioner.embedders.0.model.positional_embedding": (77, 1280),
    **FIRST_STAGE,
}
SD15_INPAINTING: Shapes = {**SD15, UNET + "input_blocks.0.0.weight": (320, 9, 3, 3)}

_KOHYA_UNET_SD = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
_KOHYA_UNET_XL = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
_KOHYA_TE = "text_model_encoder_layers_0_self_attn_q_proj"


def kohya(unet: str, context: int, out: int = 320, *, te: str = "", te_width: int = 0) -> Shapes:
    shapes: Shapes = {
        f"{unet}.lora_down.weight": (4, context),
        f"{unet}.lora_up.weight": (out, 4),
        f"{unet}.alpha": (),
    }
    if te:
        shapes |= {
            f"{te}_{_KOHYA_TE}.lora_down.weight": (4, te_width),
            f"{te}_{_KOHYA_TE}.lora_up.weight": (te_width, 4),
            f"{te}_{_KOHYA_TE}.alpha": (),
        }
    return shapes


KOHYA_SD15 = kohya(_KOHYA_UNET_SD, 768, te="lora_te", te_width=768)
KOHYA_SD2 = kohya(_KOHYA_UNET_SD, 1024, te="lora_te", te_width=1024)
KOHYA_SDXL = kohya(_KOHYA_UNET_XL, 2048, 640) | kohya(
    _KOHYA_UNET_XL, 2048, 640, te="lora_te2", te_width=1280
)
KOHYA_SDXL_UNET_ONLY = kohya(_KOHYA_UNET_XL, 2048, 640)
# A text-encoder-only SD 1.5 LoRA: the family comes from the CLIP-L width.
KOHYA_SD15_TE_ONLY = {k: v for k, v in KOHYA_SD15.items() if k.startswith("lora_te_")}
LOCON_SD15: Shapes = KOHYA_SD15 | {
    "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": (4, 320, 3, 3),
    "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": (320, 4, 1, 1),
    "lora_unet_down_blocks_0_resnets_0_conv1.alpha": (),
}
_PEFT_UNET = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
PEFT_SD15: Shapes = {
    f"{_PEFT_UNET}.lora_A.weight": (4, 768),
    f"{_PEFT_UNET}.lora_B.weight": (320, 4),
    "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": (4, 768),
    "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": (768, 4),
}
PEFT_SDXL: Shapes = {
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (4, 2048),
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (640, 4),
    "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": (4, 1280),
    "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": (1280, 4),
}
LOHA: Shapes = {
    f"{_KOHYA_UNET_SD}.hada_w1_a": (320, 4),
    f"{_KOHYA_UNET_SD}.hada_w1_b": (4, 768),
    f"{_KOHYA_UNET_SD}.hada_w2_a": (320, 4),
    f"{_KOHYA_UNET_SD}.hada_w2_b": (4, 768),
    f"{_KOHYA_UNET_SD}.alpha": (),
}
LOKR: Shapes = {
    f"{_KOHYA_UNET_SD}.lokr_w1": (4, 4),
    f"{_KOHYA_UNET_SD}.lokr_w2": (80, 192),
    f"{_KOHYA_UNET_SD}.alpha": (),
}

EMBEDDING_SD15: Shapes = {"emb_params": (2, 768)}
EMBEDDING_SD2: Shapes = {"emb_params": (1, 1024)}
EMBEDDING_SDXL: Shapes = {"clip_l": (3, 768), "clip_g": (3, 1280)}

VAE: Shapes = {
    "encoder.conv_in.weight": (128, 3, 3, 3),
    "encoder.conv_out.weight": (8, 512, 3, 3),
    "decoder.conv_in.weight": (512, 4, 3, 3),
    "decoder.conv_out.weight": (3, 128, 3, 3),
    "quant_conv.weight": (8, 8, 1, 1),
    "post_quant_conv.weight": (4, 4, 1, 1),
}
VAE_DIFFUSERS: Shapes = {
    "encoder.down_blocks.0.resnets.0.conv1.weight": (128, 128, 3, 3),
    "decoder.up_blocks.3.resnets.0.conv1.weight": (128, 128, 3, 3),
    "decoder.conv_in.weight": (512, 4, 3, 3),
    "quant_conv.weight": (8, 8, 1, 1),
    "post_quant_conv.weight": (4, 4, 1, 1),
}
VAE_16_CHANNELS: Shapes = {
    "encoder.conv_in.weight": (128, 3, 3, 3),
    "decoder.conv_in.weight": (512, 16, 3, 3),
}
DIFFUSERS_UNET: Shapes = {
    "conv_in.weight": (320, 4, 3, 3),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, 768),
}


def write(path: Path, shapes: Shapes, metadata: dict[str, str] | None = None) -> Path:
    """A real ``.safetensors`` file of zeros in float16 with these shapes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(s, dtype=np.float16) for k, s in shapes.items()}, path, metadata)
    return path


def torch_save(path: Path, shapes: Shapes, *, wrap: str | None = "state_dict") -> Path:
    """A real ``torch.save`` file (zip pickle) of these shapes, under ``{wrap: ...}`` as
    checkpoints keep them."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}
    torch.save({wrap: tensors, "global_step": 840000} if wrap else tensors, path)
    return path


def a1111_embedding_pt(path: Path, vectors: int, width: int, **save: object) -> Path:
    """A textual inversion as AUTOMATIC1111 saves it (``string_to_param`` {'*': [n, dim]})."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": torch.zeros(vectors, width, requires_grad=True)},
        "name": path.stem,
        "step": 1500,
        "sd_checkpoint": "cc6cb27103",
        "sd_checkpoint_name": "v1-5-pruned-emaonly",
    }
    torch.save(data, path, **save)  # type: ignore[arg-type]
    return path
