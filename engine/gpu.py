"""How a loaded pipeline runs on its device: precision, attention, memory layout, VAE memory,
CPU offload and compilation. ``PipelineCache`` picks the dtype with :func:`pipeline_dtype`
and applies :func:`prepare` once to every pipeline it loads; on a CPU worker only
:func:`vae_for_call` (above its threshold) changes a pixel.

- Precision: fp16 on CUDA, or bf16 (``cuda_dtype``), which has fp32's range and so never
  overflows, on GPUs with bf16 tensor cores (compute capability 8.0 on); fp32 elsewhere.
- Attention: PyTorch's fused ``scaled_dot_product_attention`` (diffusers'
  ``AttnProcessor2_0``), set explicitly on every attention layer of the UNet and the VAE that
  runs the default processor, so no earlier ``set_default_attn_processor`` or library default
  leaves the slow matmul-softmax-matmul path in place. A layer with its own processor (an
  IP-Adapter) or an unscaled one (``scale_qk=False``: SDPA always scales) keeps its own.
- Memory layout: channels_last for the UNet and the VAE on CUDA, the layout cuDNN's fp16 and
  bf16 convolution kernels work in (otherwise every convolution transposes its input). CPU
  kernels differ, so CPUs keep the default layout.
- VAE memory: per pipeline on CUDA, *slicing* (``vae_slicing``): a batch is decoded one
  image at a time, so decoding 8 SDXL images takes one image's activations (several GiB in
  the fp32 upcast) and the same arithmetic per image as a batch of one. (CPUs have the
  memory, and their tests see the decoder take the whole batch, as before.) Per call, on
  any device, *tiling* (:func:`vae_for_call`, for the renderer): an image of more than
  ``vae_tile_pixels`` pixels is encoded and decoded in overlapping tiles of the VAE's own
  size (512 px for SD1.5, 1024 px for SDXL). Tiling is decided per call because it changes
  pixels (tiles are blended at their seams) and belongs only where a whole-image decode
  would not fit: the default, 1024 x 1024, leaves every SDXL training size (1152 x 896,
  1344 x 768, ...) whole.
- SDXL's VAE overflows in fp16 (NaN, a black image). An fp16 SDXL pipeline with its own VAE
  keeps that VAE's ``force_upcast``, so diffusers decodes in fp32; a model whose catalog
  entry names a ``vae:`` (``madebyollin/sdxl-vae-fp16-fix``) follows that VAE's config and
  decodes in fp16. A NaN that gets through anyway is ``engine.finite``'s to catch.
- CPU offload (``cpu_offload``) for GPUs smaller than the model: ``model`` keeps each module
  in CPU memory until it runs (a little slower), ``sequential`` each layer (much slower,
  least memory). Ignored, with a log line, on a CPU device. The cache's memory budget then
  counts CPU memory.
- ``compile_unet``: ``torch.compile`` of the UNet in place, then one short warm-up render at
  the model's native size so the first job does not pay for the compilation; the seconds
  are logged, included in the load time, and added to :data:`COMPILES`. A new image size,
  batch size, sampler or LoRA set can still recompile during a job. CUDA only, and not with
  offload (the offload hooks move weights under the compiled graph).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.catalog import ModelEntry
from engine.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "COMPILES",
    "CompileCounter",
    "GpuSetup",
    "compile_unet",
    "pipeline_dtype",
    "prepare",
    "use_sdpa",
    "vae_for_call",
    "vae_tiling",
]

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


@dataclass
class CompileCounter:
    """UNet compilations in this process and the seconds they took (warm-ups included).
    Process-wide, like torch's own compilation caches; the worker reports it."""

    count: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, seconds: float) -> None:
        """Count one compilation of ``seconds``."""
        with self._lock:
            self.count += 1
            self.seconds += seconds


COMPILES = CompileCounter()


@dataclass(frozen=True)
class GpuSetup:
    """What :func:`prepare` applied to a pipeline."""

    device: str
    dtype: str  # fp16, bf16, fp32
    sdpa_layers: int  # attention layers running scaled_dot_product_attention
    kept_layers: int  # attention layers left with a processor of their own
    channels_last: bool
    vae_slicing: bool
    vae_upcast: bool | None  # fp16 SDXL: whether its VAE decodes in fp32; None: not applicable
    offload: str  # none, model, sequential: as applied
    compile_s: float | None  # seconds compiling and warming up; None: not compiled

    def describe(self) -> str:
        """The setup in one log line."""
        parts = [self.device, self.dtype, f"SDPA in {self.sdpa_layers} attention layers"]
        if self.kept_layers:
            parts.append(f"{self.kept_layers} with their own processor")
        if self.channels_last:
            parts.append("channels_last")
        if self.vae_slicing:
            parts.append("VAE slicing")
        if self.vae_upcast is not None:
            parts.append("VAE decodes in fp32" if self.vae_upcast else "VAE decodes in fp16")
        if self.offload != "none":
            parts.append(f"{self.offload} CPU offload")
        if self.compile_s is not None:
            parts.append(f"UNet compiled in {self.compile_s:.1f}s")
        return ", ".join(parts)


def resolve_device(settings: Settings) -> str:
    """``settings.device``, else ``cuda`` when available, else ``cpu``."""
    if settings.device:
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pipeline_dtype(*, device: str, settings: Settings) -> torch.dtype:
    """The dtype of pipelines on ``device``: ``settings.cuda_dtype`` on CUDA, fp32 elsewhere
    (CPU kernels are fast in fp32 only). bf16 on a GPU without bf16 tensor cores (before
    compute capability 8.0) falls back to fp16, with a warning."""
    if not device.startswith("cuda"):
        return torch.float32
    dtype = DTYPES[settings.cuda_dtype]
    if dtype == torch.bfloat16 and torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability(torch.device(device))
        if major < 8:
            log.warning(
                "PROOFROOM_CUDA_DTYPE=bf16 is not supported by %s (bf16 needs compute "
                "capability 8.0 or later); using fp16",
                torch.cuda.get_device_name(torch.device(device)),
            )
            return torch.float16
    return dtype


def prepare(pipe: Any, *, model: ModelEntry, device: str, settings: Settings) -> GpuSetup:
    """Set up freshly loaded ``pipe`` (already on ``device``, in its dtype) to run there:
    SDPA attention; on CUDA channels_last and VAE slicing; the SDXL fp16 VAE upcast; CPU
    offload and compilation as ``settings`` say (see the module's docstring). Logs one line."""
    cuda = device.startswith("cuda")
    sdpa, kept = 0, 0
    for module in _modules(pipe, "unet", "vae"):
        done, left = use_sdpa(module)
        sdpa, kept = sdpa + done, kept + left
    if cuda:
        for module in _modules(pipe, "unet", "vae"):
            module.to(memory_format=torch.channels_last)
    vae: Any = getattr(pipe, "vae", None)
    slicing = cuda and settings.vae_slicing and hasattr(vae, "use_slicing")
    if slicing:
        vae.enable_slicing()
    upcast = _keep_vae_upcast(pipe, model=model)
    offload = _offload(pipe, device=device, settings=settings)
    compile_s = None
    if settings.compile_unet:
        if not cuda:
            log.info("PROOFROOM_COMPILE_UNET is ignored on %s: it compiles for CUDA", device)
        elif offload != "none":
            log.warning(
                "PROOFROOM_COMPILE_UNET is ignored with PROOFROOM_CPU_OFFLOAD=%s: the offload "
                "hooks move the weights the compiled UNet would run on",
                offload,
            )
        else:
            compile_s = compile_unet(pipe)
    dtype = next(pipe.unet.parameters()).dtype
    setup = GpuSetup(
        device=device,
        dtype=_NAMES.get(dtype, str(dtype)),
        sdpa_layers=sdpa,
        kept_layers=kept,
        channels_last=cuda,
        vae_slicing=slicing,
        vae_upcast=upcast,
        offload=offload,
        compile_s=compile_s,
    )
    log.info("model %s runs on %s", model.name, setup.describe())
    return setup


def use_sdpa(module: Any) -> tuple[int, int]:
    """Put ``AttnProcessor2_0`` (``scaled_dot_product_attention``) in every attention layer of
    ``module`` that runs a default processor with the default scale; returns (layers set,
    layers that keep a processor of their own)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    processor: Any = AttnProcessor2_0()  # stateless: one serves every layer
    done, kept = 0, 0
    for layer in module.modules():
        if not isinstance(layer, Attention):
            continue
        # SDPA always scales by 1/sqrt(head dim): an unscaled layer keeps its processor.
        if isinstance(layer.processor, AttnProcessor | AttnProcessor2_0) and layer.scale_qk:
            layer.set_processor(processor)
            done += 1
        else:
            kept += 1
    return done, kept


def vae_tiling(*, width: int, height: int, settings: Settings) -> bool:
    """Whether a call of ``width`` x ``height`` images uses VAE tiling: above
    ``settings.vae_tile_pixels`` pixels (0: never)."""
    return 0 < settings.vae_tile_pixels < width * height


@contextmanager
def vae_for_call(pipe: Any, *, width: int, height: int, settings: Settings) -> Iterator[bool]:
    """VAE tiling on for one pipeline call of ``width`` x ``height`` images when
    :func:`vae_tiling` says so, and the VAE's previous state back afterwards; yields whether
    tiling is on. Hold the model's lock: the VAE is shared by its derived pipelines."""
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "use_tiling"):
        yield False
        return
    before = vae.use_tiling
    vae.use_tiling = vae_tiling(width=width, height=height, settings=settings)
    try:
        yield bool(vae.use_tiling)
    finally:
        vae.use_tiling = before


def compile_unet(pipe: Any, *, backend: str = "inductor") -> float:
    """``torch.compile`` ``pipe.unet`` in place (``pipe.unet`` stays the same module, so its
    config, LoRA adapters and derived pipelines keep working), then render two steps at the
    model's native size with CFG so the compilation happens now rather than in the first job.
    Returns the seconds it took and adds them to :data:`COMPILES`."""
    started = time.perf_counter()
    pipe.unet.compile(backend=backend)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    pipe.set_progress_bar_config(disable=True)
    # CFG doubles the batch, as in every job; latents only: the VAE is not compiled. The
    # pipeline's own no_grad, as in jobs: a grad mode of its own would recompile there.
    pipe(
        prompt="",
        num_inference_steps=2,
        guidance_scale=2.0,
        height=side,
        width=side,
        output_type="latent",
    )
    if pipe.device.type == "cuda":
        torch.cuda.synchronize(pipe.device)
    seconds = time.perf_counter() - started
    COMPILES.add(seconds)
    log.info("compiled the UNet (%s) and warmed it up at %dpx in %.1fs", backend, side, seconds)
    return seconds


def _modules(pipe: Any, *names: str) -> list[Any]:
    return [m for m in (getattr(pipe, n, None) for n in names) if isinstance(m, torch.nn.Module)]


def _keep_vae_upcast(pipe: Any, *, model: ModelEntry) -> bool | None:
    """For an fp16 SDXL pipeline: make its own VAE decode in fp32 (``force_upcast``), leave a
    VAE the catalog names to its own config; whether it decodes in fp32. None otherwise:
    diffusers upcasts SDXL VAEs in fp16 only, and bf16 cannot overflow."""
    vae = getattr(pipe, "vae", None)
    if model.family != "sdxl" or vae is None or vae.dtype != torch.float16:
        return None
    if model.vae:
        return bool(vae.config.get("force_upcast", False))
    if not vae.config.get("force_upcast", False):
        vae.register_to_config(force_upcast=True)
        log.info(
            "model %s: its VAE's config says it runs in fp16, where SDXL's VAE overflows; it "
            "decodes in fp32. Name an fp16-fix VAE as the model's vae: to decode in fp16",
            model.name,
        )
    return True


def _offload(pipe: Any, *, device: str, settings: Settings) -> str:
    how = settings.cpu_offload
    if how == "none":
        return how
    if torch.device(device).type == "cpu":
        log.warning(
            "PROOFROOM_CPU_OFFLOAD=%s is ignored on %s: the models are in CPU memory already",
            how,
            device,
        )
        return "none"
    if how == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return how
