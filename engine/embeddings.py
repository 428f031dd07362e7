"""Textual-inversion embeddings: which a prompt names, reading their files, checking that
they fit a model, and keeping them loaded in a warm pipeline.

A word of a job's prompt or negative prompt that is the name of an embedding in the catalog
(``catalog.embeddings``; matched case-insensitively as a whole word, as A1111 matches an
embedding's name) stands for that embedding's vectors, weights included: in
``(easynegative:1.2)`` every vector gets 1.2. Any other word stays text.

Files: A1111 ``.pt`` (``{'string_to_param': {'*': tensor[n, dim]}, 'name': ...}``, read with
``torch.load(..., weights_only=True)``: a file that needs more than tensors to unpickle is
refused, never run), A1111 ``.safetensors`` (``emb_params``), the diffusers layout
(``{token: tensor}``, ``.bin`` too) and SDXL pairs (``clip_l`` [n, 768] and ``clip_g``
[n, 1280]). An SD1.5/SD2 embedding (one tensor) fits a model whose one text encoder has its
width; an SDXL pair fits an SDXL model. One that does not fit is a :class:`SpecError`
sentence rather than A1111's silent skip.

Loading (:func:`use_embeddings`): each file is added once to a warm pipeline with diffusers'
``load_textual_inversion`` under fresh tokens ``<ti:name>``, ``<ti:name>_1``, ... (one per
vector; for SDXL into both tokenizer/text-encoder pairs), and stays resident, recorded in
``LoadedPipeline.embeddings`` like its LoRA adapters; derived pipelines share the same
tokenizers and encoders. ``engine.prompts`` then puts those tokens' ids where the word is.
The tokens are never matched in the prompt text itself, so a pipeline holding an embedding
changes nothing for a job whose catalog does not name it.

No torch at import: :func:`embedding_words` and :func:`embeddings_for` serve the bot too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.catalog import Catalog, EmbeddingEntry, ModelEntry
from engine.errors import CatalogError, SpecError
from engine.prompts import word_pattern
from engine.settings import Settings

if TYPE_CHECKING:
    import torch

    from engine.pipelines import LoadedPipeline

log = logging.getLogger(__name__)

__all__ = [
    "EmbeddingFile",
    "embedding_path",
    "embedding_words",
    "embeddings_for",
    "family_of",
    "read_embedding",
    "use_embeddings",
]

# Text-encoder widths of the families (SD2 and SDXL's second encoder are OpenCLIP).
WIDTHS = {768: "sd15", 1024: "sd2"}
SDXL_WIDTHS = (768, 1280)
TOKEN_PREFIX = "<ti:"


@dataclass(frozen=True)
class EmbeddingFile:
    """An embedding a job uses: its catalog ``name`` (the word in the prompt) and ``path``.
    What ``TI hashes`` needs to hash."""

    name: str
    path: Path


def embedding_words(text: str, names: Iterable[str]) -> list[str]:
    """The ``names`` that ``text`` uses, in order of first use, each once: whole words,
    case-insensitive, inside weighting too.

    >>> embedding_words("ugly, (EasyNegative:1.2), handsome", ["easynegative", "hands"])
    ['easynegative']
    """
    by_lower: dict[str, str] = {}
    for name in names:
        by_lower.setdefault(name.lower(), name)
    pattern = word_pattern(by_lower)
    if pattern is None:
        return []
    found = (by_lower[m.group(0).lower()] for m in pattern.finditer(text))
    return list(dict.fromkeys(found))


def embeddings_for(
    catalog: Catalog, model: ModelEntry, texts: Sequence[str], *, settings: Settings
) -> list[EmbeddingFile]:
    """The catalog embeddings that ``texts`` (prompt, negative) name, each checked against
    ``model``'s family and with its file found: a :class:`SpecError` for an embedding made
    for another family, a :class:`CatalogError` for a missing file."""
    names = embedding_words("\n".join(texts), catalog.embeddings)
    files = []
    for name in names:
        entry = catalog.embeddings[name]
        if entry.families and model.family not in entry.families:
            fits = [m for m, e in catalog.models.items() if e.family in entry.families]
            where = ", ".join(f"`{m}`" for m in fits) if fits else "another model"
            raise SpecError(
                f"embedding `{name}` is made for {'/'.join(entry.families)} models and cannot "
                f"be used with `{model.name}` ({model.family}); leave `{name}` out of the "
                f"prompt or use it with {where}"
            )
        files.append(EmbeddingFile(name=name, path=embedding_path(entry, settings)))
    return files


def embedding_path(entry: EmbeddingEntry, settings: Settings) -> Path:
    """The file of ``entry``: its ``source`` as is when absolute (found in a drop-in folder
    or an A1111 install), else under ``settings.embedding_dir``."""
    source = Path(entry.source).expanduser()
    if source.is_absolute():
        path = source
    else:
        root = settings.embedding_dir.resolve()
        path = (root / source).resolve()
        if not path.is_relative_to(root):
            raise CatalogError(f"embedding `{entry.name}` points outside the embedding directory")
    if not path.is_file():
        raise CatalogError(
            f"embedding `{entry.name}` is in the catalog but its file {entry.source} is missing "
            f"on the worker; ask an admin to put it in {settings.embedding_dir}"
        )
    return path


def read_embedding(path: Path, *, name: str | None = None) -> dict[str, torch.Tensor]:
    """The vectors of embedding file ``path``: ``{"clip": [n, dim]}`` for one text encoder
    (SD1.5, SD2), ``{"clip_l": [n, 768], "clip_g": [n, 1280]}`` for SDXL; float32 on the CPU.
    A :class:`CatalogError` when it is unreadable, not an embedding, or a ``.pt`` that holds
    more than tensors (pickled objects are refused, not run)."""
    import torch

    label = f"embedding `{name}`" if name else f"embedding file {path.name}"
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, safetensors and OS errors all mean the same here
        log.warning("cannot read embedding %s: %s", path, exc)
        raise CatalogError(
            f"{label} cannot be read ({path.name}: not a plain tensor file; a .pt is only read "
            "when it holds nothing but tensors); ask an admin to replace it, e.g. by a "
            ".safetensors"
        ) from None
    vectors = _vectors(data)
    if vectors is None:
        raise CatalogError(f"{label} ({path.name}) is not a textual-inversion embedding")
    return vectors


def _vectors(data: Any) -> dict[str, torch.Tensor] | None:
    """A1111's reading of an embedding file's contents (``load_from_file``), or None."""
    import torch

    def matrix(value: Any) -> torch.Tensor | None:
        if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or not value.numel():
            return None
        tensor = value.detach().to("cpu", torch.float32)
        return tensor.unsqueeze(0) if tensor.ndim == 1 else tensor

    if isinstance(data, torch.Tensor):
        single = matrix(data)
        return None if single is None else {"clip": single}
    if not isinstance(data, dict):
        return None
    if "string_to_param" in data:  # A1111 .pt
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            return None
        single = matrix(next(iter(params.values())))
        return None if single is None else {"clip": single}
    if "clip_l" in data and "clip_g" in data:  # SDXL
        clip_l, clip_g = matrix(data["clip_l"]), matrix(data["clip_g"])
        if clip_l is None or clip_g is None or clip_l.shape[0] != clip_g.shape[0]:
            return None
        return {"clip_l": clip_l, "clip_g": clip_g}
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    if len(data) == 1 and len(tensors) == 1:  # A1111 .safetensors (emb_params), diffusers
        single = matrix(tensors[0])
        return None if single is None else {"clip": single}
    return None


def family_of(vectors: dict[str, torch.Tensor]) -> str | None:
    """The family the vectors of :func:`read_embedding` were made for (by their widths:
    768 sd15, 1024 sd2, a 768/1280 pair sdxl), None when no real family has them."""
    if set(vectors) == {"clip_l", "clip_g"}:
        widths = (vectors["clip_l"].shape[-1], vectors["clip_g"].shape[-1])
        return "sdxl" if widths == SDXL_WIDTHS else None
    return WIDTHS.get(vectors["clip"].shape[-1]) if "clip" in vectors else None


def use_embeddings(loaded: LoadedPipeline, files: list[EmbeddingFile]) -> dict[str, list[str]]:
    """Load each of ``files`` not yet in ``loaded`` (once; it stays resident) and return
    ``{name: its tokens}`` for ``engine.prompts.encode_prompts(..., embeddings=)``. Call it
    holding ``loaded.lock``. A :class:`SpecError` for a file that does not fit the model."""
    words: dict[str, list[str]] = {}
    changed = False
    for file in files:
        key = file.name.lower()
        resident = loaded.embeddings.get(key)
        if resident is None or resident[0] != str(file.path):
            tokens = _load(loaded, file)
            loaded.embeddings[key] = (str(file.path), tokens)
            changed = True
        words[file.name] = loaded.embeddings[key][1]
    if changed:
        from engine.pipelines import pipeline_bytes

        loaded.nbytes = pipeline_bytes(loaded.pipe)  # the encoders' token tables grew
    return words


def _targets(pipe: Any) -> list[tuple[str, Any, Any]]:
    """(vector key, tokenizer, text encoder) of each text encoder of ``pipe``."""
    if getattr(pipe, "text_encoder_2", None) is not None:
        return [
            ("clip_l", pipe.tokenizer, pipe.text_encoder),
            ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2),
        ]
    return [("clip", pipe.tokenizer, pipe.text_encoder)]


def _load(loaded: LoadedPipeline, file: EmbeddingFile) -> list[str]:
    """Read ``file``, check it fits ``loaded``'s model and add it to each tokenizer and
    text encoder under fresh tokens; those tokens, one per vector."""
    vectors = read_embedding(file.path, name=file.name)
    targets = _targets(loaded.pipe)
    _check_fits(file.name, vectors, targets, model=loaded.name, family=loaded.family)
    count = next(iter(vectors.values())).shape[0]
    token = _fresh_token(file.name, count, [tokenizer for _, tokenizer, _ in targets])
    for key, tokenizer, encoder in targets:
        weight = encoder.get_input_embeddings().weight
        loaded.pipe.load_textual_inversion(
            vectors[key].to(weight.device, weight.dtype),
            token=token,
            tokenizer=tokenizer,
            text_encoder=encoder,
        )
    tokens = [token] + [f"{token}_{i}" for i in range(1, count)]
    log.info("embedding %s loaded into %s (%d vectors)", file.name, loaded.name, count)
    return tokens


def _check_fits(
    name: str,
    vectors: dict[str, torch.Tensor],
    targets: list[tuple[str, Any, Any]],
    *,
    model: str,
    family: str,
) -> None:
    made_for = family_of(vectors)
    made = f" (made for {made_for} models)" if made_for else ""
    if set(vectors) != {key for key, _, _ in targets}:
        kind = "an SDXL pair (clip_l/clip_g)" if "clip_l" in vectors else "a single-encoder one"
        raise SpecError(
            f"embedding `{name}` is {kind}{made} and does not fit `{model}` ({family}); "
            f"leave `{name}` out of the prompt or use it with a model of its family"
        )
    for key, _, encoder in targets:
        width = encoder.get_input_embeddings().weight.shape[-1]
        if vectors[key].shape[-1] != width:
            raise SpecError(
                f"embedding `{name}` has {vectors[key].shape[-1]}-wide vectors{made} and "
                f"`{model}` ({family}) needs {width}; leave `{name}` out of the prompt or use "
                "it with a model of its family"
            )


def _fresh_token(name: str, count: int, tokenizers: list[Any]) -> str:
    """``<ti:name>`` (``<ti:name:2>``... once that is taken, e.g. by an earlier file of the
    same name) such that it and its ``_1``... are in none of ``tokenizers``."""
    vocabularies = [tokenizer.get_vocab() for tokenizer in tokenizers]
    base = f"{TOKEN_PREFIX}{name.lower()}"
    for n in range(1, 1000):
        token = f"{base}>" if n == 1 else f"{base}:{n}>"
        wanted = [token] + [f"{token}_{i}" for i in range(1, count)]
        if not any(t in vocab for vocab in vocabularies for t in wanted):
            return token
    raise RuntimeError(f"no free token for embedding {name}")
