"""The sha256 of model, LoRA and embedding files as AUTOMATIC1111 writes them into an
image's ``parameters`` (``Model hash``, ``Lora hashes``, ``TI hashes``), so Civitai and
other readers link an image to the files that made it.

A1111's definitions (``modules/hashes.py``, ``modules/sd_models.py``,
``extensions-builtin/Lora/network.py``, ``modules/textual_inversion/textual_inversion.py``):

- checkpoint: sha256 of the whole file; ``Model hash`` is its first 10 hex digits;
- LoRA: the ``sshs_model_hash`` of a ``.safetensors`` header's ``__metadata__`` when there
  is one, else for ``.safetensors`` the "addnet" hash (sha256 of the bytes after the
  header: ``addnet_hash_safetensors``), else sha256 of the whole file; first 12 hex digits;
- textual-inversion embedding: sha256 of the whole file; first 12 hex digits.

Hashing a checkpoint reads gigabytes, so each file is hashed once: :class:`HashCache`
keeps the digests by resolved path, size and mtime (ns) in memory and in a small JSON
file (``file-hashes.json`` in the model cache folder, shared by the worker processes of
a host); a changed file is hashed again. Standard library only: no torch here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_NAME",
    "HashCache",
    "addnet_hash_safetensors",
    "cache_for",
    "embedding_short_hash",
    "lora_hash",
    "lora_short_hash",
    "model_short_hash",
    "safetensors_metadata",
    "sha256_of",
    "short_model_hash",
]

CACHE_NAME = "file-hashes.json"
MODEL_HASH_LENGTH = 10  # sd_models.CheckpointInfo: shorthash = sha256[0:10]
SHORT_HASH_LENGTH = 12  # LoRA NetworkOnDisk and textual-inversion Embedding: hash[0:12]
_BLOCK = 1024 * 1024  # A1111's blksize
_FORMAT = 1  # version of the JSON cache file


def calculate_sha256(stream: BinaryIO) -> str:
    """sha256 of everything ``stream`` holds from where it is (A1111's ``calculate_sha256``)."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_BLOCK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def addnet_hash_safetensors(stream: BinaryIO) -> str:
    """A1111's (and kohya-ss's) ``addnet_hash_safetensors``: the sha256 of a safetensors
    file's tensor data, i.e. of everything after the 8-byte little-endian header length
    and the JSON header, so editing the metadata does not change it."""
    stream.seek(0)
    header_length = int.from_bytes(stream.read(8), "little")
    stream.seek(header_length + 8)
    return calculate_sha256(stream)


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header; empty when it has none or the
    header is not JSON."""
    with open(path, "rb") as stream:
        header_length = int.from_bytes(stream.read(8), "little")
        if header_length <= 0 or header_length > 100 * 2**20:  # not a safetensors header
            return {}
        raw = stream.read(header_length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    found = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _whole_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return calculate_sha256(stream)


def _addnet(path: Path) -> str:
    with open(path, "rb") as stream:
        return addnet_hash_safetensors(stream)


def _lora(path: Path) -> str:
    """A1111's ``NetworkOnDisk`` hash: ``sshs_model_hash`` from the metadata, else the addnet
    hash for ``.safetensors`` (``use_addnet_hash=self.is_safetensors``), else sha256."""
    if path.suffix.lower() != ".safetensors":
        return _whole_file(path)
    return safetensors_metadata(path).get("sshs_model_hash") or _addnet(path)


_KINDS: dict[str, Callable[[Path], str]] = {"sha256": _whole_file, "addnet": _addnet, "lora": _lora}


class HashCache:
    """Digests of files by kind (``sha256``, ``addnet``, ``lora``), resolved path, size and
    mtime, kept in memory and, with a ``folder``, in ``folder/file-hashes.json``.

    ``computed`` counts the digests actually computed (a file read), by ``kind:path``:
    tests and the bench read it to see that nothing was hashed twice. Thread-safe; several
    processes may share the file (each write merges what is on disk first).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.file = Path(folder) / CACHE_NAME if folder is not None else None
        self.computed: Counter[str] = Counter()
        self._entries: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """The sha256 of the whole file (hex, 64 digits)."""
        return self.hash(path, "sha256")

    def addnet(self, path: str | os.PathLike[str]) -> str:
        """:func:`addnet_hash_safetensors` of a safetensors file (hex, 64 digits)."""
        return self.hash(path, "addnet")

    def hash(self, path: str | os.PathLike[str], kind: str) -> str:
        """The ``kind`` digest of ``path``: from the cache when the file's size and mtime
        are those it was hashed with, else computed now and kept. ``OSError`` when the file
        cannot be read."""
        compute = _KINDS[kind]
        resolved = Path(path).expanduser().resolve()
        stat = resolved.stat()
        key = f"{kind}:{resolved}"
        with self._lock:
            entry = self._load().get(key)
        if entry and (entry.get("size"), entry.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
            return str(entry["hash"])
        digest = compute(resolved)
        self.computed[key] += 1
        log.info("hashed %s (%s): %s", resolved, kind, digest)
        # The size and mtime from before reading: a file changed meanwhile is hashed again.
        self._keep(key, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "hash": digest})
        return digest

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.file is None or not self.file.is_file():
            return {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("ignoring the unreadable hash cache %s: %s", self.file, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return {}
        files = data.get("files")
        return {k: v for k, v in files.items() if isinstance(v, dict)} if files else {}

    def _keep(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            entries = self._load()
            entries.update({k: v for k, v in self._read().items() if k not in entries})
            entries[key] = entry
            for gone in [k for k in entries if not Path(k.partition(":")[2]).exists()]:
                del entries[gone]  # files deleted since: the cache does not grow forever
            if self.file is None:
                return
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                text = json.dumps({"format": _FORMAT, "files": entries}, indent=1, sort_keys=True)
                partial = self.file.with_name(
                    f".{self.file.name}.{os.getpid()}.{threading.get_ident()}.tmp"
                )
                partial.write_text(text, encoding="utf-8")
                os.replace(partial, self.file)  # readers never see half a file
            except OSError as exc:  # a read-only cache folder: hashes stay in memory
                log.warning("cannot write the hash cache %s: %s", self.file, exc)


_caches: dict[Path | None, HashCache] = {}
_caches_lock = threading.Lock()


def cache_for(folder: str | os.PathLike[str] | None) -> HashCache:
    """The process's one :class:`HashCache` of ``folder`` (None: in memory only)."""
    key = Path(folder).expanduser().resolve() if folder is not None else None
    with _caches_lock:
        if key not in _caches:
            _caches[key] = HashCache(key)
        return _caches[key]


def _cache(cache: HashCache | None, cache_dir: str | os.PathLike[str] | None) -> HashCache:
    return cache if cache is not None else cache_for(cache_dir)


def sha256_of(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: HashCache | None = None,
) -> str:
    """The sha256 of the whole file ``path``, hashed once per size and mtime (the cache of
    ``cache_dir``, or ``cache``)."""
    return _cache(cache, cache_dir).sha256(path)


def short_model_hash(sha256: str) -> str:
    """A1111's ``Model hash``: the first 10 hex digits of the checkpoint's sha256."""
    return sha256[:MODEL_HASH_LENGTH]


def model_short_hash(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: HashCache | None = None,
) -> str:
    """``Model hash`` of checkpoint file ``path``."""
    return short_model_hash(sha256_of(path, cache_dir=cache_dir, cache=cache))


def lora_hash(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: HashCache | None = None,
) -> str:
    """A1111's full hash of LoRA file ``path`` (see the module docstring)."""
    return _cache(cache, cache_dir).hash(path, "lora")


def lora_short_hash(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: HashCache | None = None,
) -> str:
    """What ``Lora hashes`` says of LoRA file ``path``: 12 hex digits."""
    return lora_hash(path, cache_dir=cache_dir, cache=cache)[:SHORT_HASH_LENGTH]


def embedding_short_hash(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: HashCache | None = None,
) -> str:
    """What ``TI hashes`` says of embedding file ``path`` (``.pt``, ``.safetensors``...):
    the first 12 hex digits of the whole file's sha256."""
    return sha256_of(path, cache_dir=cache_dir, cache=cache)[:SHORT_HASH_LENGTH]
