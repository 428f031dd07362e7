"""Loading a model from its catalog ``source``, and the sentence when its weights are not here.

A source is a single ``.safetensors`` / ``.ckpt`` file, a local diffusers folder, or a
Hugging Face Hub repo id (``owner/name``). Weights that are not on this worker are the
common case on a fresh or offline host (``HF_HUB_OFFLINE=1`` and an empty cache): that is
a :class:`ModelUnavailableError` whose sentence names the model, its source and how an admin
gets it, so the worker fails the job with one log line instead of a traceback per job
(and does not retry it: the next attempt would find the same empty cache). A file or folder
that exists but does not load stays an internal error, with its traceback for the admin.

Single files (:func:`load_model`, :func:`load_vae`) load offline with diffusers'
``from_single_file``. Their configs come from, in order: the model's ``config:`` folder (a
local diffusers folder, tokenizers included), an A1111-style ``<stem>.yaml`` beside the file
(the UNet and VAE shapes, and ``parameterization: "v"``), else the family's standard configs
shipped in ``engine/configs/`` (see its README: SD 1.5, SD 2.1-base, SDXL base 1.0). Those
have no tokenizer files: the CLIP vocabulary is built from the BPE file of the
``open-clip-torch`` wheel when it is installed (``pip install --no-deps open-clip-torch``),
else such a model is refused with a sentence saying so. A ``.ckpt`` (a pickle, which can run
code when loaded) is refused unless ``allow_pickle``; a truncated ``.safetensors`` and an SDXL
refiner are refused with a sentence too.

A model's ``vae:`` (a catalog VAE, a file or a folder) replaces its own VAE; a VAE file is
read with the architecture and scaling factor of the model's own VAE. An SDXL model in fp16
on a GPU should name ``madebyollin/sdxl-vae-fp16-fix``: SDXL's own VAE overflows in fp16 and
is upcast to fp32 for every decode.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError

from engine.catalog import ModelEntry
from engine.clip_vocab import CONFIGS_DIR, shipped_tokenizers
from engine.errors import ModelUnavailableError
from engine.model_files import is_sdxl_refiner
from engine.tensor_files import FileUnreadable, read_header

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Inside the open-clip-torch wheel: the CLIP BPE merges every SD tokenizer is built from.
_SDXL_OPEN_CLIP = "conditioner.embedders.1.model."


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


def _load_local(
    cls: Any, path: Path, *, source: str, dtype: Any, what: str, **single_file: Any
) -> Any:
    try:
        if path.is_file():
            return cls.from_single_file(str(path), **dtype_argument(dtype), **single_file)
        return cls.from_pretrained(str(path), **dtype_argument(dtype))
    except (OSError, ValueError) as exc:
        # It is there but does not load: a broken download or a wrong layout. The admin
        # needs the details (and the traceback), the user gets "something went wrong".
        raise RuntimeError(f"cannot load {what} from {source}: {exc}") from exc


# --- single files ---------------------------------------------------------------------


@dataclass(frozen=True)
class SingleFilePlan:
    """Where the configs of a single-file model come from (see the module docstring)."""

    config: Path  # a diffusers folder: model_index.json, unet/, vae/, text_encoder/...
    original_config: Path | None = None  # the A1111 yaml beside the file
    prediction_type: str | None = None  # from the yaml's parameterization
    shipped: bool = False  # the family's configs in engine/configs (no tokenizer files)


def load_model(cls: Any, model: ModelEntry, *, dtype: Any, allow_pickle: bool = False) -> Any:
    """The pipeline ``cls`` of catalog ``model``: a single file with its configs (see
    :func:`single_file_plan`), else a diffusers folder or Hub repo through :func:`load`."""
    path = Path(model.source).expanduser()
    if not path.is_file():
        return load(cls, model.source, dtype=dtype, kind="model", name=model.name)
    keys = check_file(path, kind="model", name=model.name, allow_pickle=allow_pickle)
    if keys is not None and is_sdxl_refiner(keys):
        raise ModelUnavailableError(
            f"model `{model.name}` is an SDXL refiner ({path.name}): a refiner only finishes "
            "the images of an SDXL base model and cannot render a prompt on its own. An "
            "admin can point its `source:` in templates/models.yaml at an SDXL base "
            "checkpoint; until then, pick another model"
        )
    plan = single_file_plan(path, family=model.family, config=model.config, name=model.name)
    extra: dict[str, Any] = {"config": str(plan.config), "local_files_only": True}
    if plan.original_config is not None:
        extra["original_config"] = str(plan.original_config)
    if plan.shipped:
        extra.update(shipped_tokenizers(model.family, name=model.name))
    if model.family == "sdxl" and keys is not None:
        extra["text_encoder_2"] = _sdxl_open_clip(path, plan.config, dtype=dtype)
    pipe = _load_local(
        cls, path, source=model.source, dtype=dtype, what=f"model {model.name}", **extra
    )
    if plan.prediction_type and pipe.scheduler.config.prediction_type != plan.prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=plan.prediction_type
        )
    return pipe


def single_file_plan(path: Path, *, family: str, config: str | None, name: str) -> SingleFilePlan:
    """The configs of single file ``path``: the ``config`` folder, else the A1111 yaml beside
    it (with the family's shipped configs for what a yaml does not describe: text encoders,
    tokenizers, scheduler), else the family's shipped configs."""
    if config:
        folder = Path(config).expanduser()
        if not (folder / "model_index.json").is_file():
            raise ModelUnavailableError(
                f"model `{name}` names `{config}` as its `config:`, which is not a diffusers "
                "folder on this worker (no model_index.json). An admin can copy the folder "
                "there or fix `config:` in templates/models.yaml; until then, pick another model"
            )
        return SingleFilePlan(config=folder)
    shipped = CONFIGS_DIR / family
    beside = path.with_suffix(".yaml")
    if beside.is_file():
        original = yaml.safe_load(beside.read_text(encoding="utf-8")) or {}
        params = original.get("model", {}).get("params", {}) if isinstance(original, dict) else {}
        v = isinstance(params, dict) and params.get("parameterization") == "v"
        return SingleFilePlan(
            config=shipped,
            original_config=beside,
            prediction_type="v_prediction" if v else "epsilon",
            shipped=True,
        )
    return SingleFilePlan(config=shipped, shipped=True)


def check_file(path: Path, *, kind: str, name: str, allow_pickle: bool) -> list[str] | None:
    """Refuse a pickle unless ``allow_pickle`` and a truncated or damaged ``.safetensors``,
    each with a sentence; the tensor names of a ``.safetensors`` (None for a pickle)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelUnavailableError(
                f"{kind} `{name}` is a pickle file ({path.name}), which can run any code "
                "when it is loaded, so this worker does not load it. An admin can get or "
                "convert a .safetensors version, or, trusting this file, allow pickles on "
                f"the worker (PROOFROOM_ALLOW_PICKLE=true); until then, pick another {kind}"
            )
        return None
    return safetensors_keys(path, kind=kind, name=name)


def safetensors_keys(path: Path, *, kind: str, name: str) -> list[str]:
    """The tensor names in ``.safetensors`` file ``path``, read from its header alone; a file
    shorter than its header says (a download that stopped) is a :class:`ModelUnavailableError`."""
    try:
        return list(read_header(path))
    except FileUnreadable as exc:
        raise ModelUnavailableError(
            f"{kind} `{name}`: its file {path.name} is incomplete or damaged ({exc.reason}), "
            "most likely a download that stopped early. An admin can download it again and "
            f"compare its size or hash with the source; until then, pick another {kind}"
        ) from None


def _sdxl_open_clip(path: Path, config: Path, *, dtype: Any) -> Any:
    """SDXL's second text encoder (OpenCLIP, ``conditioner.embedders.1``) read by its prefix.
    diffusers tells the two encoders of a file apart by their width alone, so encoders of
    the same width (the tiny test model) would both get the first one's weights."""
    from accelerate import init_empty_weights  # type: ignore[import-untyped]
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with safe_open(str(path), framework="pt") as file:
        state = {k: file.get_tensor(k) for k in file.keys() if k.startswith(_SDXL_OPEN_CLIP)}  # noqa: SIM118
    encoder_config = CLIPTextConfig.from_pretrained(str(config / "text_encoder_2"))
    with init_empty_weights():  # parameters on meta until assigned; buffers real
        encoder = CLIPTextModelWithProjection(encoder_config)
    weights = convert_open_clip_checkpoint(encoder, state, prefix=_SDXL_OPEN_CLIP)
    encoder.load_state_dict(weights, strict=True, assign=True)
    return encoder.to(dtype).eval()


def load_vae(source: str, *, name: str, like: Any, dtype: Any, allow_pickle: bool = False) -> Any:
    """The ``AutoencoderKL`` at ``source`` (a single file, a diffusers folder, with or without
    a ``vae/`` subfolder, or a Hub repo id). A single file is read with the config of
    ``like``, the model's own VAE (same architecture; the family's scaling factor)."""
    from diffusers import AutoencoderKL

    path = Path(source).expanduser()
    what = f"VAE {name}"
    if path.is_file():
        check_file(path, kind="VAE", name=name, allow_pickle=allow_pickle)
        with tempfile.TemporaryDirectory() as folder:
            like.save_config(folder)
            return _load_local(
                AutoencoderKL,
                path,
                source=source,
                dtype=dtype,
                what=what,
                config=folder,
                local_files_only=True,
            )
    if (path / "vae" / "config.json").is_file():
        try:
            return AutoencoderKL.from_pretrained(
                str(path), subfolder="vae", **dtype_argument(dtype)
            )
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot load {what} from {source}: {exc}") from exc
    return load(AutoencoderKL, source, dtype=dtype, kind="VAE", name=name)


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
    return {"ControlNet": "controlnets.yaml", "VAE": "vaes.yaml"}.get(kind, "models.yaml")
