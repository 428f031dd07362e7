"""The warm pipeline cache: each model loaded once per worker, LRU within a memory budget.

Also the per-job state of a pipeline: the sampler (a fresh scheduler from the model's
own scheduler config, so one job's choice never leaks into the next), the LoRA adapters
(``engine.loras``: each file loaded once as a named adapter, then switched per job), and
the pipelines derived from it for img2img, inpainting and ControlNet (``from_pipe``: the
same UNet, VAE and text encoders, so a mode costs no memory beyond its ControlNet).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import file_hashes, gpu, sources, tiny
from engine.catalog import ControlNetEntry, LoraEntry, ModelEntry, VaeEntry
from engine.errors import CatalogError
from engine.gpu import resolve_device
from engine.loras import LoraAdapters, LoraFile
from engine.model_folders import folders
from engine.samplers import make_scheduler
from engine.settings import Settings
from engine.spec import Mode

log = logging.getLogger(__name__)

__all__ = [
    "LoadedControlNet",
    "LoadedPipeline",
    "PipelineCache",
    "module_bytes",
    "pipeline_bytes",
    "resolve_device",
]

PIPELINE_CLASSES = {
    "sd15": "StableDiffusionPipeline",
    "sd2": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}
# Pipelines derived from a model's base pipeline, per family and mode.
DERIVED_CLASSES: dict[tuple[str, Mode], str] = {
    ("sd15", Mode.img2img): "StableDiffusionImg2ImgPipeline",
    ("sd15", Mode.inpaint): "StableDiffusionInpaintPipeline",
    ("sd15", Mode.controlnet): "StableDiffusionControlNetPipeline",
    ("sd2", Mode.img2img): "StableDiffusionImg2ImgPipeline",
    ("sd2", Mode.inpaint): "StableDiffusionInpaintPipeline",
    ("sd2", Mode.controlnet): "StableDiffusionControlNetPipeline",
    ("sdxl", Mode.img2img): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", Mode.inpaint): "StableDiffusionXLInpaintPipeline",
    ("sdxl", Mode.controlnet): "StableDiffusionXLControlNetPipeline",
}


@dataclass(eq=False)
class LoadedControlNet:
    """A ControlNet model in the cache, shared by every pipeline that uses it."""

    key: str  # its source: catalog entries naming the same file share one module
    module: Any
    nbytes: int


@dataclass(eq=False)
class LoadedPipeline:
    """A model in the cache: its base (txt2img) pipeline and the pipelines derived from it.
    Hold ``lock`` while configuring and running any of them."""

    name: str
    family: str
    pipe: Any
    nbytes: int
    base_scheduler_config: Any
    lora_cap: int = 8
    lora_reads: Counter[str] = field(default_factory=Counter)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # (mode, ControlNet key or "") -> pipeline sharing ``pipe``'s modules
    derived: dict[tuple[Mode, str], Any] = field(default_factory=dict)
    loras: LoraAdapters = field(init=False)
    # Textual-inversion embeddings loaded into its tokenizers and text encoders, kept
    # resident (engine.embeddings.use_embeddings): lower-case name -> (file, tokens)
    embeddings: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    model_hash: str | None = None  # A1111's ``Model hash`` of its file; None without one

    def __post_init__(self) -> None:
        self.loras = LoraAdapters(pipe=self.pipe, cap=self.lora_cap, reads=self.lora_reads)

    @property
    def adapters(self) -> dict[str, str]:
        """Resident LoRA adapters: adapter name -> file, least recently used first."""
        return dict(self.loras.resident)

    def pipeline(self, mode: Mode, *, controlnet: LoadedControlNet | None = None) -> Any:
        """The pipeline for ``mode``: the base one for txt2img, else one derived with
        ``from_pipe`` on first use and kept (per mode and ControlNet); an upscale runs on
        the img2img one."""
        if mode is Mode.txt2img:
            return self.pipe
        if mode is Mode.upscale:  # a tiled img2img pass (engine.upscale)
            mode = Mode.img2img
        if (mode is Mode.controlnet) != (controlnet is not None):
            raise ValueError("a ControlNet is needed by, and only by, controlnet mode")
        key = (mode, controlnet.key if controlnet else "")
        if key not in self.derived:
            import diffusers

            cls = getattr(diffusers, DERIVED_CLASSES[(self.family, mode)])
            extra = {"controlnet": controlnet.module} if controlnet else {}
            # dtype: from_pipe casts every shared module to it (fp32 when not given), which
            # would silently turn the base pipeline's fp16 weights into fp32 copies.
            derived = cls.from_pipe(self.pipe, dtype=self.pipe.dtype, **extra)
            derived.set_progress_bar_config(disable=True)
            self.derived[key] = derived
        return self.derived[key]

    def forget(self, controlnet_key: str) -> None:
        """Drop the derived pipelines built around ControlNet ``controlnet_key``."""
        for key in [k for k in self.derived if k[1] == controlnet_key]:
            del self.derived[key]

    def use_sampler(self, sampler: str) -> None:
        """Install a fresh scheduler for ``sampler`` (never derived from the previous job's)
        in the base pipeline and every derived one: they shared the old one too."""
        scheduler = make_scheduler(sampler, self.base_scheduler_config)
        for pipe in (self.pipe, *self.derived.values()):
            pipe.scheduler = scheduler

    def use_loras(self, loras: list[LoraFile]) -> bool:
        """Activate exactly ``loras`` (name, file, weight); an empty list disables LoRA.
        Adapters live in the shared modules, so this serves every derived pipeline too.
        Returns whether ``nbytes`` changed; :meth:`PipelineCache.use_loras` also keeps the
        cache within its budget."""
        if not self.loras.activate(loras):
            return False
        self.nbytes = pipeline_bytes(self.pipe)  # adapters are parameters too
        return True


class PipelineCache:
    """Loaded pipelines by model, and the ControlNets they use, least recently used first
    out beyond ``budget_bytes`` (checked after every load, of a model, a ControlNet or a
    LoRA adapter).

    ``loads[name]`` counts loads per model, ``controlnet_loads[key]`` per ControlNet and
    ``lora_reads[file]`` reads per LoRA file; ``load_seconds`` sums model load time. Tests,
    the bench and the worker read them to see that nothing was loaded twice.
    """

    def __init__(
        self, *, settings: Settings, budget_bytes: int | None = None, device: str | None = None
    ) -> None:
        self.settings = settings
        self.budget_bytes = settings.pipeline_cache_bytes if budget_bytes is None else budget_bytes
        self.device = device or resolve_device(settings)
        # fp16 or bf16 on CUDA (PROOFROOM_CUDA_DTYPE): half the memory and what GPUs are
        # fast at; CPUs want fp32.
        self.dtype = gpu.pipeline_dtype(device=self.device, settings=settings)
        self.loads: Counter[str] = Counter()
        self.controlnet_loads: Counter[str] = Counter()
        self.lora_reads: Counter[str] = Counter()
        self.load_seconds = 0.0
        # Files' hashes for the images' metadata, each file hashed once (engine.file_hashes).
        self.hashes = file_hashes.cache_for(settings.model_cache_dir)
        # ("model", name, source, family) -> LoadedPipeline; ("controlnet", source) -> ...
        self._entries: OrderedDict[tuple[str, ...], LoadedPipeline | LoadedControlNet] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def acquire(
        self, model: ModelEntry, *, vae: VaeEntry | None = None
    ) -> tuple[LoadedPipeline, float]:
        """The pipeline of ``model`` and the seconds spent loading it now (0.0 when warm).
        ``vae``: the catalog entry of the VAE that ``model.vae`` names (a ``vae:`` that is a
        path needs none)."""
        key = _model_key(model)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], 0.0  # type: ignore[return-value]
            started = time.perf_counter()
            pipe = self._load(model, vae=vae)
            # Attention, memory layout, VAE memory, offload, compilation (engine.gpu); a
            # compilation's warm-up counts as load time.
            gpu.prepare(pipe, model=model, device=self.device, settings=self.settings)
            pipe.set_progress_bar_config(disable=True)
            loaded = LoadedPipeline(
                name=model.name,
                family=model.family,
                pipe=pipe,
                nbytes=pipeline_bytes(pipe),
                base_scheduler_config=pipe.scheduler.config,
                lora_cap=self.settings.lora_adapter_cap,
                lora_reads=self.lora_reads,
                model_hash=self.model_hash(model),
            )
            seconds = time.perf_counter() - started
            self.loads[model.name] += 1
            self.load_seconds += seconds
            self._entries[key] = loaded
            self._evict(keep=(key,))
            log.info(
                "loaded model %s in %.1fs (%.0f MiB)", model.name, seconds, loaded.nbytes / 2**20
            )
            return loaded, seconds

    def acquire_controlnet(
        self, entry: ControlNetEntry, *, model: ModelEntry | None = None
    ) -> tuple[LoadedControlNet, float]:
        """The ControlNet of ``entry`` and the seconds spent loading it now (0.0 when warm).
        Entries with the same source share one module."""
        key = ("controlnet", entry.source)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], 0.0  # type: ignore[return-value]
            started = time.perf_counter()
            module = self._load_controlnet(entry)
            loaded = LoadedControlNet(key=entry.source, module=module, nbytes=module_bytes(module))
            seconds = time.perf_counter() - started
            self.controlnet_loads[entry.source] += 1
            self.load_seconds += seconds
            self._entries[key] = loaded
            # The job's model was acquired just before; evicting it would only make the
            # next job load it again while this one still holds it.
            self._evict(keep=(key, _model_key(model)) if model else (key,))
            log.info("loaded ControlNet %s in %.1fs", entry.name, seconds)
            return loaded, seconds

    def use_loras(
        self,
        *,
        loaded: LoadedPipeline,
        loras: list[LoraFile],
        controlnet: LoadedControlNet | None = None,
    ) -> None:
        """Activate exactly ``loras`` in ``loaded`` (see :meth:`LoadedPipeline.use_loras`);
        when that changed its bytes, evict least recently used entries other than ``loaded``
        and ``controlnet`` (what the calling job holds) until the cache is within its budget
        again. Call it holding ``loaded.lock``."""
        if not loaded.use_loras(loras):
            return
        with self._lock:
            # The job renders with these next; evicting them would free no memory while it
            # holds them and would only make the next job load them again.
            held = tuple(k for k, e in self._entries.items() if e is loaded or e is controlnet)
            self._evict(keep=held)

    def lora_path(self, lora: LoraEntry) -> Path:
        """The file of ``lora``: a built-in generated on first use, or one in a LoRA folder
        (``lora_dir``, or an A1111 install's ``models/Lora``; a relative source is in the
        first)."""
        if lora.source.startswith("builtin:"):
            return tiny.lora_file(lora.source.removeprefix("builtin:"), cache_dir=self.model_cache)
        roots = [folder.resolve() for kind, folder in folders(self.settings) if kind == "lora"]
        path = (roots[0] / lora.source).resolve()
        if not any(path.is_relative_to(root) for root in roots):
            raise CatalogError(f"LoRA `{lora.name}` points outside the LoRA directories")
        if not path.is_file():
            raise CatalogError(
                f"LoRA `{lora.name}` is in the catalog but its file {lora.source} is missing "
                f"on the worker; ask an admin to put it in {self.settings.lora_dir}"
            )
        return path

    def model_hash(self, model: ModelEntry) -> str | None:
        """``Model hash`` of a model loaded from a local single file; None otherwise."""
        if model.source.startswith("builtin:") or not Path(model.source).expanduser().is_file():
            return None
        return self.short_hash(file_hashes.model_short_hash, Path(model.source).expanduser())

    def short_hash(self, short_hash: Callable[..., str], path: Path) -> str | None:
        """``short_hash(path)`` from this cache's hash cache; None (and a warning) when the
        file cannot be read: a missing hash never fails a job."""
        try:
            return short_hash(path, cache=self.hashes)
        except OSError as exc:
            log.warning("cannot hash %s: %s", path, exc)
            return None

    @property
    def model_cache(self) -> Path:
        """Where generated and downloaded model files are kept."""
        return Path(self.settings.model_cache_dir)

    @property
    def total_bytes(self) -> int:
        """Parameter bytes held now: every model once (its derived pipelines share its
        modules) and every ControlNet once."""
        return sum(e.nbytes for e in self._entries.values())

    def loaded_models(self) -> list[str]:
        """Names of the models held now, least recently used first."""
        return [e.name for e in self._entries.values() if isinstance(e, LoadedPipeline)]

    def free_memory(self) -> None:
        """What the worker does after a job ran out of memory: keep the model used last
        (the next job most likely wants it warm), evict every other model and the
        ControlNets (on the device they only compete for its memory), collect garbage and,
        on CUDA, hand the allocator's cached blocks back, so the next job can get what this
        one could not."""
        with self._lock:
            last = next((k for k in reversed(self._entries) if k[0] == "model"), None)
            for key in [k for k in self._entries if k != last]:
                self._remove(key)
                log.info("evicted %s to free memory after a job ran out of it", "/".join(key[1:3]))
        gc.collect()  # tensors held in reference cycles (pipelines, modules) go now
        self._free()

    def _evict(self, *, keep: tuple[tuple[str, ...], ...]) -> None:
        evicted = False
        while self.total_bytes > self.budget_bytes and len(self._entries) > len(keep):
            key = next(k for k in self._entries if k not in keep)
            self._remove(key)
            log.info("evicted %s to stay within the cache budget", "/".join(key[1:3]))
            evicted = True
        if evicted:
            self._free()

    def _remove(self, key: tuple[str, ...]) -> None:
        old = self._entries.pop(key)
        if isinstance(old, LoadedControlNet):
            for entry in self._entries.values():
                if isinstance(entry, LoadedPipeline):
                    entry.forget(old.key)

    def _free(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def _load(self, model: ModelEntry, *, vae: VaeEntry | None = None) -> Any:
        """The pipeline of ``model`` on this cache's device: a built-in, a single file (with
        its configs, ``engine.sources.load_model``), a diffusers folder or a Hub repo; with
        the VAE that ``model.vae`` names instead of its own."""
        import diffusers

        source = model.source
        allow_pickle = self.settings.allow_pickle
        if source.startswith("builtin:"):
            pipe = self._place(tiny.load(source.removeprefix("builtin:")))
        else:
            cls = getattr(diffusers, PIPELINE_CLASSES[model.family])
            pipe = sources.load_model(cls, model, dtype=self.dtype, allow_pickle=allow_pickle)
            if not self._offloads:  # offloading places each module itself (engine.gpu)
                pipe = pipe.to(self.device)
        if model.vae:
            entry = _vae_entry(model, vae)
            own = sources.load_vae(
                entry.source,
                name=entry.name,
                like=pipe.vae,
                dtype=self.dtype,
                allow_pickle=allow_pickle,
            )
            pipe.vae = (own if self._offloads else own.to(self.device)).eval()
        return pipe

    @property
    def _offloads(self) -> bool:
        """Whether modules stay in CPU memory until they run (``PROOFROOM_CPU_OFFLOAD`` on a
        GPU): moving the whole model to a GPU smaller than it would fail at load."""
        return self.settings.cpu_offload != "none" and self.device.startswith("cuda")

    def _load_controlnet(self, entry: ControlNetEntry) -> Any:
        from diffusers import ControlNetModel

        if entry.source.startswith("builtin:"):
            return self._place(tiny.controlnet(entry.source.removeprefix("builtin:")))
        module = sources.load(
            ControlNetModel, entry.source, dtype=self.dtype, kind="ControlNet", name=entry.name
        )
        module = module.to(self.device).eval()
        gpu.use_sdpa(module)
        if self.device.startswith("cuda"):  # as the UNet it feeds (engine.gpu.prepare)
            module.to(memory_format=torch.channels_last)
        return module

    def _place(self, built: Any) -> Any:
        """A built-in (made in fp32 on the CPU) on this cache's device and dtype."""
        if self.dtype == torch.float32:  # casting to fp32 anyway only warns
            return built.to(self.device)
        return built.to(self.device, self.dtype)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of parameters and buffers of every torch module in ``pipe``."""
    return sum(
        module_bytes(component)
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
    )


def module_bytes(module: Any) -> int:
    """Bytes of the parameters and buffers of one torch module."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _model_key(model: ModelEntry) -> tuple[str, ...]:
    return ("model", model.name, model.source, model.family, model.config or "", model.vae or "")


def _vae_entry(model: ModelEntry, vae: VaeEntry | None) -> VaeEntry:
    """The VAE that ``model.vae`` names: ``vae`` (its catalog entry), or the path itself."""
    assert model.vae
    if vae is not None:
        if model.family not in vae.families:
            raise CatalogError(
                f"model `{model.name}` names VAE `{vae.name}`, which is made for "
                f"{'/'.join(vae.families)} models, not {model.family}; an admin can fix "
                "its `vae:` in templates/models.yaml"
            )
        return vae
    if "/" in model.vae or "\\" in model.vae or Path(model.vae).suffix:
        return VaeEntry(name=model.vae, source=model.vae, families=[model.family])
    raise CatalogError(
        f"model `{model.name}` names VAE `{model.vae}`, which is not in the catalog; an "
        "admin can add it to templates/vaes.yaml or fix its `vae:` in templates/models.yaml"
    )
