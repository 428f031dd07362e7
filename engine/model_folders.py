"""The drop-in folders: every model, LoRA, embedding and VAE file put in them is in the
catalog under its slugged file name (``DreamShaper_8.safetensors`` -> ``dreamshaper-8``),
with the family its tensors say (``engine.model_files.describe``), no YAML needed.

Folders: ``settings.model_dir``, ``lora_dir``, ``embedding_dir``, ``vae_dir`` and, when
``settings.a1111_dir`` names an AUTOMATIC1111 install, its ``models/Stable-diffusion``,
``models/Lora``, ``embeddings`` and ``models/VAE`` (used in place). Subfolders are
searched too, except a diffusers or transformers folder (one with ``model_index.json`` or
``config.json``). A missing folder is empty. Scanning reads headers only, so a folder of
large checkpoints takes milliseconds; a file that cannot be used (unreadable, unsupported,
the wrong kind for its folder, a name already taken) is a :class:`FileProblem`, never an
exception. Light: no torch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from engine.catalog import (
    Catalog,
    EmbeddingEntry,
    FileProblem,
    LoraEntry,
    ModelEntry,
    VaeEntry,
)
from engine.model_files import Described, describe
from engine.settings import Settings

log = logging.getLogger(__name__)

FolderKind = Literal["model", "lora", "embedding", "vae"]
# What each kind of folder holds; files of other suffixes (previews, notes, configs) are
# not looked at.
SUFFIXES: dict[FolderKind, tuple[str, ...]] = {
    "model": (".safetensors", ".ckpt"),
    "lora": (".safetensors", ".pt", ".ckpt"),
    "embedding": (".safetensors", ".pt", ".bin"),
    "vae": (".safetensors", ".pt", ".ckpt"),
}
# How a kind is named in sentences (and in FileProblem.kind).
LABELS: dict[str, str] = {"model": "model", "lora": "LoRA", "embedding": "embedding", "vae": "VAE"}
_ARTICLES = {"model": "a model", "lora": "a LoRA", "embedding": "an embedding", "vae": "a VAE"}
# Where an AUTOMATIC1111 install keeps each kind.
A1111_FOLDERS: dict[FolderKind, str] = {
    "model": "models/Stable-diffusion",
    "lora": "models/Lora",
    "embedding": "embeddings",
    "vae": "models/VAE",
}
_NOT_A_FILE_FOLDER = ("model_index.json", "config.json")


def slug(stem: str) -> str:
    """A file stem as a catalog name: lower case, runs of anything but ``[a-z0-9]`` become
    one ``-`` (``DreamShaper_8`` -> ``dreamshaper-8``)."""
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")


def folders(settings: Settings) -> list[tuple[FolderKind, Path]]:
    """The drop-in folders of ``settings``, each once: ours first, then the A1111 ones."""
    listed: list[tuple[FolderKind, Path]] = [
        ("model", settings.model_dir),
        ("lora", settings.lora_dir),
        ("embedding", settings.embedding_dir),
        ("vae", settings.vae_dir),
    ]
    if settings.a1111_dir is not None:
        listed += [(kind, settings.a1111_dir / sub) for kind, sub in A1111_FOLDERS.items()]
    seen: set[tuple[str, Path]] = set()
    unique: list[tuple[FolderKind, Path]] = []
    for kind, folder in listed:
        key = (kind, Path(folder).expanduser().resolve())
        if key not in seen:
            seen.add(key)
            unique.append((kind, Path(folder).expanduser()))
    return unique


def files(folder: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """The files of ``folder`` and its subfolders with one of ``suffixes``, in name order;
    hidden ones and diffusers/transformers folders are skipped."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return
    if any(e.name in _NOT_A_FILE_FOLDER for e in entries):
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            subfolders.append(entry)
        elif entry.suffix.lower() in suffixes and entry.is_file():
            yield entry
    for sub in subfolders:
        yield from files(sub, suffixes)


def scan(settings: Settings) -> Catalog:
    """A catalog of the drop-in folders alone: ``models``, ``loras``, ``embeddings``,
    ``vaes`` (named by slugged file stem) and the ``problems`` of files that cannot be used.
    Give it to ``Catalog.load(..., found=)`` (see :func:`load_catalog`)."""
    models: dict[str, ModelEntry] = {}
    loras: dict[str, LoraEntry] = {}
    embeddings: dict[str, EmbeddingEntry] = {}
    vaes: dict[str, VaeEntry] = {}
    sources: dict[tuple[FolderKind, str], Path] = {}
    problems: list[FileProblem] = []
    home: dict[str, Path] = {kind: folder for kind, folder in folders(settings)[:4]}
    for kind, folder in folders(settings):
        if not folder.is_dir():
            continue
        for path in files(folder, SUFFIXES[kind]):

            def problem(reason: str, path: Path = path, kind: FolderKind = kind) -> None:
                problems.append(FileProblem(path=str(path), kind=LABELS[kind], reason=reason))

            name = slug(path.stem)
            if not name:
                problem("its file name has no letters or digits to name it by; rename it")
                continue
            if (kind, name) in sources:
                other = sources[(kind, name)]
                problem(f"another {LABELS[kind]} is already called `{name}` ({other}); rename one")
                continue
            described = describe(path, allow_pickle=settings.allow_pickle)
            if described.problem is not None:
                problem(described.problem)
                continue
            if described.kind != kind:
                right = home.get(described.kind)
                problem(
                    f"{_what(described)}, not {_ARTICLES[kind]}"
                    + (f": move it to {right}" if right is not None else "")
                )
                continue
            sources[(kind, name)] = path
            entry = _entry(kind, name, path, described)
            if isinstance(entry, ModelEntry):
                models[name] = entry
            elif isinstance(entry, LoraEntry):
                loras[name] = entry
            elif isinstance(entry, EmbeddingEntry):
                embeddings[name] = entry
            else:
                vaes[name] = entry
    catalog = Catalog(
        templates={},
        models=models,
        loras=loras,
        embeddings=embeddings,
        vaes=vaes,
        problems=problems,
    )
    if sources or problems:
        log.info(
            "drop-in folders: %d models, %d LoRAs, %d embeddings, %d VAEs; %d files cannot be "
            "used (`proofroom models` says why)",
            len(catalog.models),
            len(catalog.loras),
            len(catalog.embeddings),
            len(catalog.vaes),
            len(problems),
        )
    return catalog


def load_catalog(settings: Settings) -> Catalog:
    """The catalog of ``settings``: the YAML under ``templates_dir`` over the files found in
    the drop-in folders."""
    return Catalog.load(settings.templates_dir, found=scan(settings))


def _what(described: Described) -> str:
    """``a LoRA (kohya-ss LoRA, sd15)``: a found file in words."""
    parts = [p for p in (described.detail, "/".join(described.families)) if p]
    return _ARTICLES.get(described.kind, "an unknown file") + (
        f" ({', '.join(parts)})" if parts else ""
    )


def _entry(
    kind: FolderKind, name: str, path: Path, described: Described
) -> ModelEntry | LoraEntry | EmbeddingEntry | VaeEntry:
    source = str(path.resolve())
    families = list(described.families)
    description = f"{described.detail} (drop-in file)"
    if kind == "model":
        family = families[0]
        side = 1024 if family == "sdxl" else 512
        # No ``config``: an A1111 ``<stem>.yaml`` beside the file is read where the file is
        # loaded (engine.sources.single_file_plan); ``config`` is a diffusers folder.
        return ModelEntry(
            name=name,
            source=source,
            family=family,
            description=description,
            width=side,
            height=side,
        )
    if kind == "lora":
        return LoraEntry(name=name, source=source, families=families, description=description)
    if kind == "embedding":
        return EmbeddingEntry(
            name=name,
            source=source,
            families=families,
            vectors=described.vectors or 1,
            description=description,
        )
    return VaeEntry(name=name, source=source, families=families, description=description)
