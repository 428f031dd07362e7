"""Built-in offline test models: ``builtin:tiny`` (SD1.5-shaped), ``builtin:tiny-xl``
(SDXL-shaped), random LoRAs and ControlNets for them.

Weights are random but deterministic: every component is built from a config right
after ``torch.manual_seed(0)``, the way diffusers' own fast tests do it, so two
processes build bit-identical models without any download. The one exception is the VAE,
trained for reconstruction and shipped as a small file (``engine.tiny_vae``), so that
img2img on a tiny model keeps its input as it does on a real one. The tokenizer is a real
CLIP BPE tokenizer whose vocabulary is generated from ``tiny/words.txt``: each listed
word is one token and anything else falls back to byte tokens, so different prompts
tokenise differently and a 150-token prompt really is 150 tokens.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from engine import tiny_vae
from engine.clip_vocab import bytes_to_unicode
from engine.store import atomic_write

WORDS_FILE = Path(__file__).with_name("tiny") / "words.txt"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TINY_MODELS = ("tiny", "tiny-xl")
# name -> (model it is made for, generator seed). Bump LORA_VERSION when the recipe changes
# so files cached by an older recipe are not reused.
TINY_LORAS: dict[str, tuple[str, int]] = {
    "tiny-lora-a": ("tiny", 1),
    "tiny-lora-b": ("tiny", 2),
    "tiny-xl-lora": ("tiny-xl", 3),
}
LORA_VERSION = 2
# name -> model it is made for.
TINY_CONTROLNETS: dict[str, str] = {"tiny-controlnet": "tiny", "tiny-xl-controlnet": "tiny-xl"}
_CONTROL_GAIN = 3.0  # zero convolutions made random at this gain...
_CONTROL_COND_GAIN = 100.0  # ...and the guide's embedding louder still, so guides differ visibly
_LORA_RANK = 4
_LORA_GAIN = 2.0  # delta about twice the attention weights' scale: clearly visible
# Attention projections of the UNet (to_*) and of the CLIP text encoders (*_proj).
_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "q_proj", "k_proj", "v_proj", "out_proj")
_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges the way the tokenizer does: lowest rank first, until none applies."""
    while len(symbols) > 1:
        pairs = [
            (ranks.get(p, math.inf), i)
            for i, p in enumerate(zip(symbols, symbols[1:], strict=False))
        ]
        rank, at = min(pairs)
        if rank == math.inf:
            break
        first, second = symbols[at], symbols[at + 1]
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


@functools.cache
def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-style ``vocab`` and ``merges`` where every word of ``words.txt`` is one token.

    Merges are only ever appended with the lowest priority, so adding a word never
    changes how an earlier word tokenises.
    """
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    ranks: dict[tuple[str, str], int] = {}
    for line in WORDS_FILE.read_text(encoding="utf-8").splitlines():
        word = line.strip().lower()
        if not word or word.startswith("#"):
            continue
        symbols = list(word)
        symbols[-1] += "</w>"
        symbols = _bpe(symbols, ranks)
        while len(symbols) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
            tokens.append(symbols[0] + symbols[1])
            symbols = _bpe(symbols, ranks)
    vocab: dict[str, int] = {}
    for token in [*tokens, BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    return vocab, list(ranks)


def tokenizer() -> CLIPTokenizer:
    """A fresh CLIP tokenizer over the generated vocabulary (``model_max_length`` 77)."""
    vocab, merges = vocab_and_merges()
    # tokenizers' BPE wants merges as tuples, whatever transformers' annotation says.
    merge_list: Any = list(merges)
    return CLIPTokenizer(vocab=dict(vocab), merges=merge_list, model_max_length=77)


def _text_config() -> CLIPTextConfig:
    vocab, _ = vocab_and_merges()
    return CLIPTextConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=5,
        projection_dim=32,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )


def _seeded(build: Any) -> Any:
    # Reseed per component so each one is independent of the others' sizes, and fork
    # the RNG so building a model never disturbs the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def _vae() -> AutoencoderKL:
    # Trained, not random (engine.tiny_vae): img2img, variations and upscales must keep
    # their input for a test to tell them from noise.
    return tiny_vae.load()


@functools.cache
def _components(name: str) -> dict[str, Any]:
    """The prototype modules of a tiny model; callers get deep copies."""
    common = {
        "block_out_channels": (32, 64),
        "layers_per_block": 2,
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    }
    if name == "tiny":
        return {
            "unet": _seeded(lambda: UNet2DConditionModel(**common, cross_attention_dim=32)),
            "vae": _seeded(_vae),
            "text_encoder": _seeded(lambda: CLIPTextModel(_text_config())),
        }
    if name == "tiny-xl":
        unet = _seeded(
            lambda: UNet2DConditionModel(
                **common,
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                transformer_layers_per_block=(1, 2),
                projection_class_embeddings_input_dim=6 * 8 + 32,  # time ids + pooled text
                cross_attention_dim=64,  # both encoders' hidden states side by side
                norm_num_groups=1,
            )
        )
        return {
            "unet": unet,
            "vae": _seeded(_vae),
            "text_encoder": _seeded(lambda: CLIPTextModel(_text_config())),
            "text_encoder_2": _seeded(lambda: CLIPTextModelWithProjection(_text_config())),
        }
    raise KeyError(f"no built-in model {name!r}; built-ins are {', '.join(TINY_MODELS)}")


def load(name: str) -> Any:
    """A new pipeline for built-in model ``name`` (``tiny`` or ``tiny-xl``), on the CPU in fp32.

    The first call in a process builds the prototype (about a second); later calls
    deep-copy it, so each caller may load LoRAs or move it without affecting others.
    """
    modules = {k: copy.deepcopy(v) for k, v in _components(name).items()}
    for module in modules.values():
        module.eval()
    if name == "tiny":
        return StableDiffusionPipeline(
            **modules,
            tokenizer=tokenizer(),
            scheduler=PNDMScheduler(**_BETAS, skip_prk_steps=True, steps_offset=1),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        **modules,
        tokenizer=tokenizer(),
        tokenizer_2=tokenizer(),
        scheduler=EulerDiscreteScheduler(**_BETAS, steps_offset=1, timestep_spacing="leading"),
        add_watermarker=False,
    )


@functools.cache
def _controlnet_prototype(name: str) -> ControlNetModel:
    if name not in TINY_CONTROLNETS:
        raise KeyError(
            f"no built-in ControlNet {name!r}; built-ins are {', '.join(TINY_CONTROLNETS)}"
        )
    unet = _components(TINY_CONTROLNETS[name])["unet"]
    # Copying the UNet's encoder is how real ControlNets start; the VAE halves the size
    # once, so the guide's embedding downsamples once too (two channel stages).
    controlnet = _seeded(
        lambda: ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    )
    # A fresh ControlNet's output convolutions are zero, so it would not change the image
    # at all; give them seeded random weights.
    generator = torch.Generator().manual_seed(4)
    embedding_out = controlnet.controlnet_cond_embedding.conv_out
    for conv in [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        embedding_out,
    ]:
        gain = _CONTROL_COND_GAIN if conv is embedding_out else _CONTROL_GAIN
        weight = torch.randn(conv.weight.shape, generator=generator)
        conv.weight.data.copy_(weight * gain / math.sqrt(conv.weight[0].numel()))
        conv.bias.data.zero_()
    return controlnet.eval()


def controlnet(name: str) -> ControlNetModel:
    """A new built-in ControlNet ``name`` (``tiny-controlnet`` for ``tiny``,
    ``tiny-xl-controlnet`` for ``tiny-xl``), on the CPU in fp32; deterministic like the
    models: built from the model's UNet under a fixed seed, no download."""
    return copy.deepcopy(_controlnet_prototype(name))


def lora_file(name: str, *, cache_dir: Path) -> Path:
    """Path of built-in LoRA ``name`` under ``cache_dir/loras``, generated on first use.

    The file is in the diffusers/peft layout (``unet.<module>.lora_A.weight``, and
    ``text_encoder.`` / ``text_encoder_2.`` for the text encoders) that
    ``pipe.load_lora_weights(path, adapter_name=...)`` reads. Its deltas are larger than
    the attention weights themselves, so the LoRA visibly changes the image.
    """
    if name not in TINY_LORAS:
        raise KeyError(f"no built-in LoRA {name!r}; built-ins are {', '.join(TINY_LORAS)}")
    model, seed = TINY_LORAS[name]
    path = Path(cache_dir) / "loras" / f"{name}-v{LORA_VERSION}.safetensors"
    if path.exists():
        return path
    from safetensors.torch import save

    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in _components(model).items():
        if prefix == "vae":
            continue
        for module_name, layer in module.named_modules():
            if isinstance(layer, torch.nn.Linear) and module_name.endswith(_LORA_TARGETS):
                down = torch.randn(_LORA_RANK, layer.in_features, generator=generator)
                up = torch.randn(layer.out_features, _LORA_RANK, generator=generator)
                key = f"{prefix}.{module_name}"
                tensors[f"{key}.lora_A.weight"] = down / math.sqrt(layer.in_features)
                tensors[f"{key}.lora_B.weight"] = up * (_LORA_GAIN / math.sqrt(_LORA_RANK))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Another worker process may be generating the same file.
    atomic_write(path, save(tensors))
    return path
