"""The warm pipeline cache: each model loaded once per worker, LRU within a memory budget.

Also the per-job state of a pipeline: the sampler (a fresh scheduler from the model's
own scheduler config, so one job's choice never leaks into the next) and the LoRA
adapters (each file loaded once as a named adapter, then switched per job).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import tiny
from engine.catalog import LoraEntry, ModelEntry
from engine.errors import CatalogError, SpecError
from engine.settings import Settings
from engine.spec import SAMPLERS

log = logging.getLogger(__name__)

# A1111 sampler name -> (diffusers scheduler class, from_config overrides).
SAMPLER_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
    ),
    # lower_order_final: diffusers forces it on (with a warning) for a final sigma of zero.
    "DPM++ SDE Karras": (
        "DPMSolverSinglestepScheduler",
        {"use_karras_sigmas": True, "lower_order_final": True},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
}
PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}


def make_scheduler(sampler: str, base_config: Any) -> Any:
    """A new scheduler for A1111 sampler name ``sampler``, from the model's scheduler config."""
    if sampler not in SAMPLER_SCHEDULERS:
        raise SpecError(f"unknown sampler `{sampler}`; choose one of: {', '.join(SAMPLERS)}")
    import diffusers

    class_name, overrides = SAMPLER_SCHEDULERS[sampler]
    return getattr(diffusers, class_name).from_config(base_config, **overrides)


def resolve_device(settings: Settings) -> str:
    """``settings.device``, else ``cuda`` when available, else ``cpu``."""
    if settings.device:
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(eq=False)
class LoadedPipeline:
    """A pipeline in the cache. Hold ``lock`` while configuring and running it."""

    name: str
    family: str
    pipe: Any
    nbytes: int
    base_scheduler_config: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    adapters: dict[str, str] = field(default_factory=dict)  # adapter name -> file loaded

    def use_sampler(self, sampler: str) -> None:
        """Install a fresh scheduler for ``sampler`` (never derived from the previous job's)."""
        self.pipe.scheduler = make_scheduler(sampler, self.base_scheduler_config)

    def use_loras(self, loras: list[tuple[str, Path, float]]) -> None:
        """Activate exactly ``loras`` (name, file, weight); an empty list disables LoRA."""
        for name, path, _ in loras:
            adapter = _adapter_name(name)
            if self.adapters.get(adapter) != str(path):
                if adapter in self.adapters:  # the catalog now points the name elsewhere
                    self.pipe.delete_adapters(adapter)
                with warnings.catch_warnings():
                    # peft warns on every adapter after the first; several are the point here.
                    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                    self.pipe.load_lora_weights(str(path), adapter_name=adapter)
                self.adapters[adapter] = str(path)
        if not self.adapters:
            return
        if not loras:
            self.pipe.disable_lora()
            return
        self.pipe.enable_lora()
        self.pipe.set_adapters(
            [_adapter_name(n) for n, _, _ in loras], adapter_weights=[w for _, _, w in loras]
        )


class PipelineCache:
    """Loaded pipelines by model, least recently used first out beyond ``budget_bytes``.

    ``loads[name]`` counts loads per model and ``load_seconds`` sums their time, so
    tests and the worker can see that a model was loaded only once.
    """

    def __init__(
        self, *, settings: Settings, budget_bytes: int | None = None, device: str | None = None
    ) -> None:
        self.settings = settings
        self.budget_bytes = settings.pipeline_cache_bytes if budget_bytes is None else budget_bytes
        self.device = device or resolve_device(settings)
        # fp16 halves memory and is what GPUs are fast at; CPUs want fp32.
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.loads: Counter[str] = Counter()
        self.load_seconds = 0.0
        self._entries: OrderedDict[tuple[str, str, str], LoadedPipeline] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, model: ModelEntry) -> tuple[LoadedPipeline, float]:
        """The pipeline of ``model`` and the seconds spent loading it now (0.0 when warm)."""
        key = (model.name, model.source, model.family)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], 0.0
            started = time.perf_counter()
            pipe = self._load(model)
            pipe.set_progress_bar_config(disable=True)
            loaded = LoadedPipeline(
                name=model.name,
                family=model.family,
                pipe=pipe,
                nbytes=pipeline_bytes(pipe),
                base_scheduler_config=pipe.scheduler.config,
            )
            seconds = time.perf_counter() - started
            self.loads[model.name] += 1
            self.load_seconds += seconds
            self._entries[key] = loaded
            self._evict(keep=key)
            log.info(
                "loaded model %s in %.1fs (%.0f MiB)", model.name, seconds, loaded.nbytes / 2**20
            )
            return loaded, seconds

    def lora_path(self, lora: LoraEntry) -> Path:
        """The file of ``lora``: a built-in generated on first use, or one in the LoRA dir."""
        if lora.source.startswith("builtin:"):
            return tiny.lora_file(lora.source.removeprefix("builtin:"), cache_dir=self.model_cache)
        root = self.settings.lora_dir.resolve()
        path = (root / lora.source).resolve()
        if not path.is_relative_to(root):
            raise CatalogError(f"LoRA `{lora.name}` points outside the LoRA directory")
        if not path.is_file():
            raise CatalogError(
                f"LoRA `{lora.name}` is in the catalog but its file {lora.source} is missing "
                f"on the worker; ask an admin to put it in {self.settings.lora_dir}"
            )
        return path

    @property
    def model_cache(self) -> Path:
        """Where generated and downloaded model files are kept."""
        return Path(self.settings.model_cache_dir)

    @property
    def total_bytes(self) -> int:
        """Parameter bytes of every pipeline held now."""
        return sum(e.nbytes for e in self._entries.values())

    def loaded_models(self) -> list[str]:
        """Names of the models held now, least recently used first."""
        return [e.name for e in self._entries.values()]

    def clear(self) -> None:
        """Drop every pipeline (the next job pays a load)."""
        with self._lock:
            self._entries.clear()
            self._free()

    def _evict(self, *, keep: tuple[str, str, str]) -> None:
        while self.total_bytes > self.budget_bytes and len(self._entries) > 1:
            key, old = next((k, e) for k, e in self._entries.items() if k != keep)
            del self._entries[key]
            log.info("evicted model %s to stay within the cache budget", old.name)
        self._free()

    def _free(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _load(self, model: ModelEntry) -> Any:
        import diffusers

        source = model.source
        if source.startswith("builtin:"):
            pipe = tiny.load(source.removeprefix("builtin:"))
            if self.dtype == torch.float32:  # built in fp32; casting to it anyway only warns
                return pipe.to(self.device)
            return pipe.to(self.device, self.dtype)
        cls = getattr(diffusers, PIPELINE_CLASSES[model.family])
        path = Path(source).expanduser()
        try:
            if path.is_file() or source.endswith((".safetensors", ".ckpt")):
                pipe = cls.from_single_file(str(path), torch_dtype=self.dtype)
            else:
                # A local diffusers folder or a Hub repo id; HF_HUB_OFFLINE=1 keeps it local.
                pipe = cls.from_pretrained(
                    str(path) if path.is_dir() else source, torch_dtype=self.dtype
                )
        except OSError as exc:
            raise RuntimeError(
                f"cannot load model {model.name} from {source}: {exc}. A Hub model must be "
                "downloaded once (huggingface-cli download <repo>) when the Hub is offline."
            ) from exc
        return pipe.to(self.device)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of parameters and buffers of every torch module in ``pipe``."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            tensors = [*component.parameters(), *component.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def _adapter_name(lora: str) -> str:
    # peft keeps adapters in ModuleDicts, whose keys may not contain dots.
    return lora.replace(".", "_")
