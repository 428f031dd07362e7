"""What a model file is, read from its tensor names and shapes alone (never from its name,
never by loading its weights): a checkpoint of a family, a LoRA, an embedding, a VAE, or a
file Proofroom cannot use and the sentence saying why.

Light on purpose: the bot lists the drop-in folders (``engine.model_folders``) and must not
import torch; the tensors are read without loading or running anything
(``engine.tensor_files``). The key layouts are those
of diffusers' ``loaders/single_file_utils.py`` (``CHECKPOINT_KEY_NAMES``) and kohya-ss
sd-scripts / LyCORIS for LoRAs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.catalog import Family
from engine.lora_formats import KOHYA_PREFIXES, LOADABLE, lora_format, refusal
from engine.tensor_files import FileUnreadable, TensorInfo, is_pickle, read_tensors

Kind = Literal["model", "lora", "embedding", "vae", "unknown"]
ALL_FAMILIES: tuple[Family, ...] = ("sd15", "sd2", "sdxl")
PICKLE_PROBLEM = (
    "pickle checkpoints can run code when loaded; convert it to .safetensors, "
    "or set PROOFROOM_ALLOW_PICKLE=1 to allow it"
)
# Width of the text a UNet attends to (its cross-attention keys): the family's text encoder.
_CONTEXT_FAMILY: dict[int, Family] = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
_TEXT_FAMILY: dict[int, Family] = {768: "sd15", 1024: "sd2"}


@dataclass(frozen=True)
class Described:
    """What :func:`describe` found. ``problem``: why the file cannot be used (unreadable,
    unsupported, a refiner...), else None. ``families``: what it fits (all three for a VAE,
    whose shape does not tell); ``detail``: its format in words (``kohya-ss LoRA``)."""

    kind: Kind
    families: tuple[Family, ...] = ()
    detail: str = ""
    vectors: int = 0  # embeddings: how many token vectors
    problem: str | None = None

    @property
    def family(self) -> Family | None:
        """The one family it is made for, if exactly one."""
        return self.families[0] if len(self.families) == 1 else None

    @property
    def usable(self) -> bool:
        return self.problem is None and self.kind != "unknown"


# -- what a file is ----------------------------------------------------------------------


def describe(path: Path, *, allow_pickle: bool = False) -> Described:
    """What ``path`` is, from its tensors' names and shapes. Never raises for what is in the
    file: an unreadable or unsupported one is a :class:`Described` with a ``problem``. A
    pickled model, LoRA or VAE is a problem unless ``allow_pickle`` (a ``.pt`` embedding is
    read safely here and is fine)."""
    path = Path(path)
    try:
        header = read_tensors(path)
    except FileUnreadable as exc:
        return Described(kind="unknown", problem=f"unreadable: {exc.reason}")
    found = describe_tensors(header, header.metadata, name=path.stem)
    pickled = is_pickle(path) and not allow_pickle
    if pickled and found.problem is None and found.kind not in ("embedding", "unknown"):
        return Described(found.kind, found.families, found.detail, problem=PICKLE_PROBLEM)
    return found


def describe_tensors(
    tensors: Mapping[str, TensorInfo], metadata: Mapping[str, str], *, name: str = "file"
) -> Described:
    """What a file with these tensors (and safetensors metadata) is; ``name`` (its stem) is
    what its problem sentences call it."""
    keys = list(tensors)
    if not keys:
        return Described("unknown", problem="it holds no tensors")
    if _lora_like(keys):
        return _lora(tensors, metadata, name=name)
    embedding = _embedding(tensors)
    if embedding is not None:
        return embedding
    vae = _vae(tensors, metadata)
    if vae is not None:
        return vae
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return _checkpoint(tensors)
    if any(k.startswith(_DIFFUSERS_LAYOUT) for k in keys):
        return Described(
            "unknown",
            problem="a part of a diffusers folder, not a single-file checkpoint (put the "
            f"whole folder's path in models.yaml instead): {_layout(keys)}",
        )
    return Described("unknown", problem=f"not a file Proofroom knows: {_layout(keys)}")


# Tensor names of diffusers' own layout (a model folder's parts, or a pipeline in one file).
_DIFFUSERS_LAYOUT = (
    "unet.",
    "text_encoder.",
    "vae.",
    "down_blocks.",
    "conv_in.",
    "time_embedding.",
)


def _layout(keys: Iterable[str]) -> str:
    """``its tensors start with unet., text_encoder. (1,234 tensors)``."""
    keys = list(keys)
    prefixes: dict[str, int] = {}
    for key in keys:
        head = key.split(".", 1)[0] + ("." if "." in key else "")
        prefixes[head] = prefixes.get(head, 0) + 1
    top = sorted(prefixes, key=lambda p: -prefixes[p])[:4]
    more = ", ..." if len(prefixes) > 4 else ""
    return f"its tensors start with {', '.join(top)}{more} ({len(keys):,} tensors)"


# Checkpoints -----------------------------------------------------------------------------

_UNET = "model.diffusion_model."
_OTHER_ARCHITECTURES = {
    "joint_blocks.": "a Stable Diffusion 3 model",
    "double_blocks.": "a Flux model",
}


def is_sdxl_refiner(keys: Iterable[str]) -> bool:
    """Whether checkpoint tensor names are an SDXL refiner's: OpenCLIP ViT-bigG as its first
    (and only) text encoder, no CLIP ViT-L. The folder scan and the loader both ask this."""
    keys = list(keys)
    return any(k.startswith("conditioner.embedders.0.model.") for k in keys) and not any(
        k.startswith("conditioner.embedders.0.transformer.") for k in keys
    )


def _checkpoint(tensors: Mapping[str, TensorInfo]) -> Described:
    keys = list(tensors)
    for marker, what in _OTHER_ARCHITECTURES.items():
        if any(k.startswith(_UNET + marker) for k in keys):
            return Described("model", problem=f"{what}, not Stable Diffusion 1.5/2/XL")
    has = {p: any(k.startswith(p) for k in keys) for p in _TEXT_ENCODERS}
    refiner = is_sdxl_refiner(keys)
    context = _cross_attention_width(
        (k, v)
        for k, v in tensors.items()
        if k.startswith(_UNET) and k.endswith("attn2.to_k.weight")
    )
    if refiner or context == 1280:
        return Described("model", ("sdxl",), problem="an SDXL refiner, not a base model")
    by_text: Family | None = None
    if has["conditioner.embedders.0.transformer."] or has["conditioner.embedders.1.model."]:
        by_text = "sdxl"
    elif has["cond_stage_model.model."]:
        by_text = "sd2"
    elif has["cond_stage_model.transformer."]:
        by_text = "sd15"
    unusual = context is not None and context not in _CONTEXT_FAMILY
    if unusual and by_text is None:
        return Described(
            "model", problem=f"its UNet attends to {context}-wide text, not SD 1.5/2/XL's"
        )
    # A standard width must agree with the text encoder's layout; an unusual one (a small
    # distilled or test model) is told by the layout alone, and says so in its detail.
    family = by_text if unusual or context is None else _CONTEXT_FAMILY[context]
    if family is None:
        return Described("model", problem=f"its model family cannot be told: {_layout(keys)}")
    if by_text is None:
        return Described(
            "model",
            (family,),
            problem="it has no text encoder (a UNet on its own), not a whole checkpoint",
        )
    if by_text != family:
        return Described(
            "model",
            problem=f"its text encoder is {by_text}'s but its UNet attends to {context}-wide text",
        )
    in_channels = _in_channels(tensors.get(_UNET + "input_blocks.0.0.weight"))
    if in_channels not in (None, 4):
        what = {9: "an inpainting model", 8: "an InstructPix2Pix model"}.get(
            in_channels, f"a model with {in_channels} input channels"
        )
        return Described(
            "model", (family,), problem=f"{what}; only text-to-image base models are supported"
        )
    size = f", its UNet attending to {context}-wide text" if unusual else ""
    return Described("model", (family,), detail=f"{_NAMES[family]} checkpoint{size}")


_TEXT_ENCODERS = (
    "cond_stage_model.transformer.",  # SD 1.x: CLIP ViT-L (768)
    "cond_stage_model.model.",  # SD 2.x: OpenCLIP ViT-H (1024)
    "conditioner.embedders.0.transformer.",  # SDXL base: CLIP ViT-L
    "conditioner.embedders.1.model.",  # SDXL base: OpenCLIP ViT-bigG
    "conditioner.embedders.0.model.",  # SDXL refiner: OpenCLIP ViT-bigG alone
)
_NAMES: dict[Family, str] = {"sd15": "SD 1.5", "sd2": "SD 2.x", "sdxl": "SDXL"}


def _cross_attention_width(items: Iterable[tuple[str, TensorInfo]]) -> int | None:
    """The input width of cross-attention keys (``to_k`` weights are [out, context])."""
    for _, info in items:
        if len(info.shape) == 2:
            return info.shape[1]
    return None


def _in_channels(info: TensorInfo | None) -> int | None:
    return info.shape[1] if info is not None and len(info.shape) == 4 else None


# LoRAs -----------------------------------------------------------------------------------

_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight")
_LORA_MARKERS = ("lora_down", "lora_up", "lora_A", "lora_B", ".lora.down", "_lora.down")
# What a loadable format reads as in a listing (``engine.lora_formats`` tells them apart).
_FORMAT_DETAIL = {
    "kohya": "kohya-ss LoRA",
    "locon": "LyCORIS LoCon",
    "diffusers": "diffusers/peft LoRA",
}
# LyCORIS algorithms diffusers cannot load: a marker in the key -> the name in the sentence.
_UNSUPPORTED = (
    ("hada_w1", "LyCORIS LoHa"),
    ("lokr_w1", "LyCORIS LoKr"),
    (".on_input", "LyCORIS (IA)³"),
    ("oft_blocks", "LyCORIS OFT"),
    ("oft_diag", "LyCORIS OFT"),
    (".oft_r", "LyCORIS BOFT"),
    (".a1.weight", "LyCORIS GLoRA"),
    (".diff_b", "LyCORIS full (diff)"),
)


def _lora_like(keys: list[str]) -> bool:
    return any(k.startswith(KOHYA_PREFIXES) for k in keys) or any(
        m in k for k in keys for m in _LORA_MARKERS
    )


def _lora(
    tensors: Mapping[str, TensorInfo], metadata: Mapping[str, str], *, name: str
) -> Described:
    keys = list(tensors)
    for marker, name in _UNSUPPORTED:
        if any(marker in k.lower() for k in keys):
            return Described("lora", problem=f"{name} is not supported")
    if any(k.endswith(".diff") for k in keys):
        return Described("lora", problem="LyCORIS full (diff) is not supported")
    fmt = lora_format(keys)
    if fmt not in LOADABLE:
        # The worker refuses it with the same reason (engine.lora_formats.refusal).
        return Described("lora", problem=refusal(name, keys) or f"{fmt} is not supported")
    detail = _FORMAT_DETAIL[fmt]
    downs = {k: v for k, v in tensors.items() if k.endswith(_DOWN)}
    family: Family | None = None
    if any(k.startswith(("lora_te2_", "text_encoder_2.", "te2.")) for k in keys):
        family = "sdxl"
    if family is None:
        width = _cross_attention_width(
            (k, v) for k, v in downs.items() if "attn2" in k and ("to_k" in k)
        )
        family = _CONTEXT_FAMILY.get(width) if width is not None else None
    if family is None:
        text = [
            v.shape[1]
            for k, v in downs.items()
            if k.startswith(("lora_te_", "lora_te1_", "text_encoder.")) and len(v.shape) == 2
        ]
        family = _TEXT_FAMILY.get(text[0]) if text else None
    if family is None:
        family = _family_from_metadata(metadata)
    if family is None:
        return Described(
            "lora",
            detail=detail,
            problem="a LoRA for a model that is not SD 1.5/2/XL, or its family cannot be told "
            "from its shapes",
        )
    return Described("lora", (family,), detail=detail)


def _family_from_metadata(metadata: Mapping[str, str]) -> Family | None:
    """kohya-ss ``ss_base_model_version`` / ``modelspec.architecture``, when shapes say nothing."""
    said = (
        metadata.get("modelspec.architecture", "") + " " + metadata.get("ss_base_model_version", "")
    ).lower()
    if re.search(r"xl", said):
        return "sdxl"
    if re.search(r"v2|sd_2|stable-diffusion-v2", said):
        return "sd2"
    if re.search(r"v1|sd_1|stable-diffusion-v1", said):
        return "sd15"
    return None


# Embeddings ------------------------------------------------------------------------------


def _embedding(tensors: Mapping[str, TensorInfo]) -> Described | None:
    """A textual inversion: A1111 ``emb_params`` or ``string_to_param.*`` [n, 768|1024],
    an SDXL pair ``clip_l`` [n, 768] + ``clip_g`` [n, 1280], or a diffusers
    ``learned_embeds`` file (one tensor, [768] or [n, 768])."""
    keys = set(tensors)
    if {"clip_l", "clip_g"} <= keys:
        clip_l, clip_g = tensors["clip_l"].shape, tensors["clip_g"].shape
        if clip_l[-1:] != (768,) or clip_g[-1:] != (1280,):
            return Described(
                "embedding", problem=f"an SDXL embedding of unexpected shapes {clip_l}, {clip_g}"
            )
        return Described("embedding", ("sdxl",), detail="SDXL embedding", vectors=_rows(clip_l))
    vectors = [k for k in keys if k == "emb_params" or k.startswith("string_to_param.")]
    if not vectors and len(keys) == 1:
        # diffusers' learned_embeds: {"<token>": [dim] or [n, dim]}.
        ((key, info),) = tensors.items()
        if "." not in key and len(info.shape) in (1, 2) and info.shape[-1] in (768, 1024, 1280):
            vectors = [key]
    if not vectors:
        return None
    shape = tensors[vectors[0]].shape
    family = _TEXT_FAMILY.get(shape[-1]) if shape else None
    if family is None:
        what = "half of an SDXL embedding (clip_g alone)" if shape[-1:] == (1280,) else ""
        return Described(
            "embedding",
            problem=f"an embedding {what or f'of width {shape[-1:]}'}: not for SD 1.5/2/XL",
        )
    return Described(
        "embedding", (family,), detail=f"{_NAMES[family]} embedding", vectors=_rows(shape)
    )


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if len(shape) == 2 else 1


# VAEs ------------------------------------------------------------------------------------

_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_VAE_EXTRAS = ("loss.", "model_ema.")  # kept in some training checkpoints, unused


def _vae(tensors: Mapping[str, TensorInfo], metadata: Mapping[str, str]) -> Described | None:
    """A VAE alone: ``encoder.*`` / ``decoder.*`` / ``(post_)quant_conv.*`` (original or
    diffusers names), or all of a checkpoint's ``first_stage_model.*``. SD 1.5, 2 and XL
    VAEs have the same shapes, so a VAE fits all three unless its metadata says."""
    names = {k.removeprefix("first_stage_model."): v for k, v in tensors.items()}
    prefixed = all(k.startswith("first_stage_model.") for k in tensors)
    parts = [k for k in names if not k.startswith(_VAE_EXTRAS)]
    if not parts or not all(k.startswith(_VAE_PARTS) for k in parts):
        return None
    if not prefixed and not any(k.startswith("decoder.") for k in parts):
        return None
    latent = None
    if "post_quant_conv.weight" in names and len(names["post_quant_conv.weight"].shape) == 4:
        latent = names["post_quant_conv.weight"].shape[1]
    elif "decoder.conv_in.weight" in names and len(names["decoder.conv_in.weight"].shape) == 4:
        latent = names["decoder.conv_in.weight"].shape[1]
    if latent not in (None, 4):
        return Described(
            "vae", problem=f"a VAE with {latent} latent channels (SD3/Flux), not SD 1.5/2/XL's 4"
        )
    said = _family_from_metadata(metadata)
    families = (said,) if said is not None else ALL_FAMILIES
    return Described("vae", families, detail="VAE")
