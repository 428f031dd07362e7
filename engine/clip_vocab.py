"""CLIP tokenizers built offline: from the BPE file of the ``open-clip-torch`` wheel for the
real models' single files (``engine.sources``), and the byte alphabet every byte-level BPE
shares (``engine.tiny`` builds its small vocabulary on it too). Nothing here is downloaded.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

from engine.errors import ModelUnavailableError

CONFIGS_DIR = Path(__file__).with_name("configs")
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_CLIP_MERGES = 49152 - 256 - 2  # what CLIP uses of the file (open_clip's SimpleTokenizer)


def shipped_tokenizers(family: str, *, name: str) -> dict[str, Any]:
    """The tokenizers of ``family`` (``tokenizer``, and ``tokenizer_2`` for SDXL) built from
    the CLIP BPE file of the open-clip-torch wheel, with the padding token and length of
    each ``engine/configs/<family>/tokenizer*/tokenizer_config.json``."""
    bpe = clip_bpe_file()
    if bpe is None:
        raise ModelUnavailableError(
            f"model `{name}` is a single file without a `config:` folder, so its tokenizer "
            "is built from the CLIP vocabulary of the open-clip-torch package, which is not "
            "installed on this worker. An admin can install it without its dependencies "
            "(`pip install --no-deps open-clip-torch`; it brings no torch) or set `config:` "
            f"in templates/models.yaml to a local diffusers folder of a {family} model; "
            "until then, pick another model"
        )
    tokenizers = {}
    for folder in sorted((CONFIGS_DIR / family).glob("tokenizer*")):
        settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizers[folder.name] = clip_tokenizer(
            bpe, pad_token=settings["pad_token"], max_length=settings["model_max_length"]
        )
    return tokenizers


def clip_bpe_file() -> Path | None:
    """The CLIP BPE file of the installed open-clip-torch, found without importing it (which
    would import torchvision), or None."""
    spec = importlib.util.find_spec("open_clip")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / CLIP_BPE_FILE
        if candidate.is_file():
            return candidate
    return None


def clip_tokenizer(bpe: Path, *, pad_token: str, max_length: int = 77) -> Any:
    """A CLIP tokenizer from BPE file ``bpe`` (gzipped merges, as open_clip ships it): the
    vocabulary of ``openai/clip-vit-large-patch14``'s vocab.json, built as open_clip does."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab(bpe)
    merge_list: Any = list(merges)  # tokenizers' BPE wants tuples, whatever the annotation
    return CLIPTokenizer(
        vocab=dict(vocab), merges=merge_list, pad_token=pad_token, model_max_length=max_length
    )


@functools.cache
def _clip_vocab(bpe: Path) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    lines = gzip.decompress(bpe.read_bytes()).decode("utf-8").split("\n")
    merges = tuple(
        (first, second)
        for first, second in (line.split() for line in lines[1 : _CLIP_MERGES + 1] if line)
    )
    alphabet = list(bytes_to_unicode().values())
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), *(a + b for a, b in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table (the alphabet of byte-level BPE)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}
