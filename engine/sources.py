"""Loading a model from its catalog ``source``, and the sentence when its weights are not here.

A source is a single ``.safetensors`` / ``.ckpt`` file, a local diffusers folder, or a
Hugging Face Hub repo id (``owner/name``). Weights that are not on this worker are the
common case on a fresh or offline host (``HF_HUB_OFFLINE=1`` and an empty cache): that is
a :class:`ModelUnavailableError` whose sentence names the model, its source and how an admin
gets it, so the worker fails the job with one log line instead of a traceback per job
(and does not retry it: the next attempt would find the same empty cache). A file or folder
that exists but does not load stays an internal error, with its traceback for the admin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError

from engine.errors import ModelUnavailableError

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def load(cls: Any, source: str, *, dtype: Any, kind: str, name: str) -> Any:
    """``cls`` (a diffusers pipeline or model class) from ``source`` in ``dtype``. ``kind`` and
    ``name`` say what it is in sentences ("model", "sd-turbo"; "ControlNet", "canny")."""
    path = Path(source).expanduser()
    if path.exists():
        return _load_local(cls, path, source=source, dtype=dtype, what=f"{kind} {name}")
    if looks_like_path(source):
        raise ModelUnavailableError(missing_path_sentence(kind=kind, name=name, source=source))
    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        # Offline, go straight to the cache: asking the Hub first only logs a warning.
        return cls.from_pretrained(source, **dtype_argument(dtype), local_files_only=offline)
    except (OSError, HFValidationError) as exc:
        # diffusers says OSError both for "not in the cache while offline" and for "no such
        # repo" (or no access, or no network) online; an invalid id is HFValidationError.
        raise ModelUnavailableError(
            hub_sentence(kind=kind, name=name, source=source, offline=offline)
        ) from exc


def looks_like_path(source: str) -> bool:
    """Whether ``source`` names a file or folder rather than a Hub repo id (``owner/name``)."""
    return (
        source.startswith(("/", ".", "~"))
        or source.endswith(SINGLE_FILE_SUFFIXES)
        or source.count("/") > 1
        or "\\" in source
    )


def hub_sentence(*, kind: str, name: str, source: str, offline: bool) -> str:
    """Why Hub model ``source`` cannot be loaded here, and how an admin gets it."""
    pick = f"until then, pick another {kind}"
    if offline:
        return (
            f"{kind} `{name}` is not downloaded on this worker: `{source}` is not in its "
            "Hugging Face cache and the Hub is offline here (HF_HUB_OFFLINE=1). An admin can "
            f"download it with `hf download {source}` (on a host with internet, with the "
            "same HF_HOME), run the worker with HF_HUB_OFFLINE=0 once, or point its "
            f"`source:` in templates/{_yaml(kind)} at a local folder; {pick}"
        )
    return (
        f"{kind} `{name}` could not be fetched from the Hugging Face Hub: `{source}` does "
        "not exist, needs a login (HF_TOKEN), or the Hub cannot be reached from this worker. "
        f"An admin can check its `source:` in templates/{_yaml(kind)} and download it with "
        f"`hf download {source}`; {pick}"
    )


def missing_path_sentence(*, kind: str, name: str, source: str) -> str:
    """Why local ``source`` cannot be loaded here, and how an admin fixes it."""
    return (
        f"{kind} `{name}` points at `{source}`, which is not on this worker. An admin can "
        f"copy the {kind} there or change its `source:` in templates/{_yaml(kind)}; "
        f"until then, pick another {kind}"
    )


def _load_local(cls: Any, path: Path, *, source: str, dtype: Any, what: str) -> Any:
    try:
        if path.is_file():
            return cls.from_single_file(str(path), **dtype_argument(dtype))
        return cls.from_pretrained(str(path), **dtype_argument(dtype))
    except (OSError, ValueError) as exc:
        # It is there but does not load: a broken download or a wrong layout. The admin
        # needs the details (and the traceback), the user gets "something went wrong".
        raise RuntimeError(f"cannot load {what} from {source}: {exc}") from exc


def dtype_argument(dtype: Any) -> dict[str, Any]:
    """The loaders' dtype keyword: ``dtype`` where diffusers has it (and warns about the old
    name on every load), ``torch_dtype`` in the older releases the project still supports."""
    import diffusers
    from diffusers.utils import deprecation_utils
    from packaging.version import Version

    # The constant came with the rename (diffusers PR 14205), for every loader at once;
    # 1.0 removes the old name (and may drop the constant with it).
    renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") or Version(
        diffusers.__version__
    ) >= Version("1.0.0.dev0")
    return {"dtype": dtype} if renamed else {"torch_dtype": dtype}


def _yaml(kind: str) -> str:
    return "controlnets.yaml" if kind == "ControlNet" else "models.yaml"
