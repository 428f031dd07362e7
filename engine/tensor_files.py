"""Tensor names, dtypes and shapes of a model file, without loading a weight and without
running any code in it: a ``.safetensors`` file is read up to the end of its JSON header
(:func:`read_header`); a ``.pt`` / ``.ckpt`` (a pickle, usually inside a zip) is read by
:func:`read_pickle_shapes`, a restricted unpickler that builds inert stand-ins for tensors
and refuses every other global. Light: no torch, so the bots can list the drop-in folders.
What the tensors make a file is ``engine.model_files``'s business.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SAFETENSORS = ".safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# safetensors itself refuses headers beyond 100 MB; a real SDXL header is about 200 kB.
_MAX_HEADER = 100 * 1024 * 1024


class FileUnreadable(ValueError):
    """A file whose header or pickle cannot be read: truncated, corrupt, or not a tensor
    file. ``reason`` is a sentence for an admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as its file describes it; ``dtype`` as safetensors spells it (``F16``) or
    the torch storage it came from (``HalfStorage``)."""

    dtype: str
    shape: tuple[int, ...]


class Header(dict[str, TensorInfo]):
    """Tensor name -> :class:`TensorInfo`; the file's ``__metadata__`` is in ``metadata``."""

    def __init__(
        self, tensors: Mapping[str, TensorInfo], metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(tensors)
        self.metadata: dict[str, str] = dict(metadata or {})


# -- safetensors --------------------------------------------------------------------------


def read_header(path: Path) -> Header:
    """The tensors of safetensors file ``path`` from its header alone (8-byte little-endian
    length, then JSON); the weights are never read. Raises :class:`FileUnreadable` for a
    truncated or invalid file: a header longer than the file, JSON that does not parse, or a
    tensor whose data would end beyond the file (how a cut-off download shows)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            head = file.read(8)
            if len(head) < 8:
                raise FileUnreadable(f"it is {size} bytes, too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_HEADER or 8 + length > size:
                raise FileUnreadable(
                    f"its header says it is {length} bytes long but the file is {size} bytes: "
                    "truncated, or not a safetensors file"
                )
            raw = file.read(length)
    except OSError as exc:
        raise FileUnreadable(f"it cannot be read: {exc.strerror or exc}") from exc
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FileUnreadable(f"its header is not valid JSON ({exc}): corrupt file") from exc
    if not isinstance(parsed, dict):
        raise FileUnreadable("its header is not a JSON object: corrupt file")
    metadata = parsed.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    data_size = size - 8 - length
    largest_end = 0
    for name, entry in parsed.items():
        try:
            dtype = str(entry["dtype"])
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FileUnreadable(f"its header entry {name!r} is malformed: corrupt file") from exc
        if start < 0 or end < start:
            raise FileUnreadable(f"tensor {name!r} has invalid data offsets: corrupt file")
        largest_end = max(largest_end, end)
        tensors[name] = TensorInfo(dtype=dtype, shape=shape)
    if largest_end > data_size:
        raise FileUnreadable(
            f"its tensors need {largest_end} bytes of data but only {data_size} are there: "
            "the file is truncated (an interrupted download?)"
        )
    if not isinstance(metadata, dict):
        metadata = {}
    return Header(tensors, {str(k): str(v) for k, v in metadata.items()})


# -- pickles (.pt / .ckpt), read without running them --------------------------------------


class _Storage:
    """Stand-in for a torch storage: only its dtype name."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and kin (what a persistent id names)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _Tensor:
    """Stand-in for a tensor: shape and dtype."""

    def __init__(self, shape: tuple[int, ...], dtype: str) -> None:
        self.shape = shape
        self.dtype = dtype


class _Module:
    """Stand-in for a pickled ``torch.nn`` container (old embeddings keep their vectors in a
    ``ParameterDict``): keeps the state it is given and nothing else."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Module:  # pickle passes arguments
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


class _Opaque(_Module):
    """Stand-in for a harmless object a checkpoint carries beside its weights (a training
    callback's state, a numpy scalar): ignored."""


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *rest: Any) -> _Tensor:
    dtype = storage.dtype if isinstance(storage, _Storage) else "?"
    return _Tensor(tuple(int(d) for d in size), dtype)


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    if not (isinstance(cls, type) and issubclass(cls, _Module)):
        raise pickle.UnpicklingError("refusing to reconstruct an object of another class")
    return cls()


_STORAGES = {
    "FloatStorage",
    "HalfStorage",
    "BFloat16Storage",
    "DoubleStorage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
}
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): dict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("torch.nn.modules.container", "ParameterDict"): _Module,
    ("torch.nn.modules.container", "ParameterList"): _Module,
}
# Objects some checkpoints carry beside their weights; they become _Opaque, never imported.
_OPAQUE_MODULES = ("pytorch_lightning.", "lightning.", "numpy.core.multiarray", "numpy._core.")
_OPAQUE_GLOBALS = {("numpy", "dtype"), ("numpy", "ndarray")}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles a torch file's object tree into stand-ins; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if (module, name) in _OPAQUE_GLOBALS or module.startswith(_OPAQUE_MODULES):
            return _Opaque
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not read safely")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 2:
            kind = pid[1]
            return _Storage(kind.name if isinstance(kind, _StorageType) else "?")
        # The legacy format names a module's class (with its source, never run) by reference.
        module = pid[1] if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module" else None
        if isinstance(module, type) and issubclass(module, _Module):
            return module
        raise pickle.UnpicklingError("it has a persistent object that is not a tensor storage")


def read_pickle_shapes(path: Path) -> dict[str, TensorInfo]:
    """Tensor key -> shape of a ``torch.save`` file (zip, or the legacy pre-1.6 format),
    without running any of its code: tensors become stand-ins, every global outside a short
    list of torch rebuild functions and containers is refused. Nested dicts are flattened
    with dots (``state_dict.model.diffusion_model...``). Raises :class:`FileUnreadable`."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                if not names:
                    raise FileUnreadable("it is a zip file without data.pkl, not a torch file")
                with archive.open(min(names, key=len)) as data:
                    tree = _SafeUnpickler(data).load()
        else:
            with path.open("rb") as file:
                tree = _load_legacy(file)
    except FileUnreadable:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise FileUnreadable(f"it cannot be read safely: {exc}") from exc
    except OSError as exc:
        raise FileUnreadable(f"it cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 (a corrupt pickle fails in many ways)
        raise FileUnreadable(f"it is not a readable torch file ({type(exc).__name__})") from exc
    return {key: TensorInfo(t.dtype, t.shape) for key, t in _flatten(tree, "")}


def _load_legacy(file: IO[bytes]) -> Any:
    """The object tree of a torch file saved without the zip format (torch < 1.6): magic
    number, protocol version, system info, then the tree (storages follow, unread)."""
    unpickler = _SafeUnpickler(file)
    try:
        magic = unpickler.load()
    except Exception as exc:  # noqa: BLE001
        raise FileUnreadable("it is neither a zip nor a legacy torch file") from exc
    if magic != _LEGACY_MAGIC:
        raise FileUnreadable("it is neither a zip nor a legacy torch file")
    unpickler.load()  # protocol version
    unpickler.load()  # system info
    return unpickler.load()


def _flatten(tree: Any, prefix: str) -> Iterator[tuple[str, _Tensor]]:
    if isinstance(tree, _Tensor):
        yield prefix.rstrip("."), tree
    elif isinstance(tree, _Module):
        # A container's parameters keep the keys they were given, as in a state dict.
        for part in ("_parameters", "_buffers", "_modules"):
            yield from _flatten(tree.state.get(part, {}), prefix)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flatten(value, f"{prefix}{key}.")
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from _flatten(value, f"{prefix}{index}.")


def read_tensors(path: Path) -> Header:
    """The tensors of ``path`` (safetensors header, or a pickle read safely), with a
    checkpoint's ``state_dict.`` wrapper taken off. Raises :class:`FileUnreadable`."""
    path = Path(path)
    if path.suffix.lower() == SAFETENSORS:
        return read_header(path)
    tensors = read_pickle_shapes(path)
    if any(k.startswith("state_dict.") for k in tensors):
        tensors = {
            k.removeprefix("state_dict."): v
            for k, v in tensors.items()
            if k.startswith("state_dict.")
        }
    return Header(tensors)


def is_pickle(path: Path) -> bool:
    """Whether ``path`` is a pickle (whose loading can run code) rather than safetensors."""
    return Path(path).suffix.lower() in PICKLE_SUFFIXES
