"""Seconds per image on a GPU through the worker's own path and through bare diffusers, side
by side in one run, and the fraction of the GPU's peak that reaches. Prints one JSON line.

    python bench/gpu.py                 # CUDA: SD1.5 at 512 px, SDXL at 1024 px, fp16
    python bench/gpu.py --quick         # batches 1 and 4, one round
    python bench/gpu.py --dtype bf16    # or --compile (PROOFROOM_COMPILE_UNET)
    python bench/gpu.py --dry-run       # the whole code path on the CPU, tiny models, 64 px

Models: the SD1.5 and SDXL architectures from ``engine/configs`` with random weights, built
on the GPU (the arithmetic does not depend on the weights; nothing is downloaded), with
``engine.tiny``'s tokenizer (ids within CLIP's vocabulary, prompts padded to 77 tokens).
SD1.5 25 steps, SDXL 30, CFG 7, DPM++ 2M Karras, batches of 1, 4 and 8.

- worker: ``engine.render.render`` of a ``JobSpec`` of count n on a ``PipelineCache`` whose
  load hands over the pipeline built in memory (so ``engine.gpu`` applies as in the worker):
  prompt encoding, the batched calls, NaN checks, PNG encoding and storing.
- bare: ``pipe(**prompt_embeds, num_images_per_prompt=n)``, PIL output, same modules.

Per batch size: both once untimed, then rounds alternating which goes first, each call
between two ``torch.cuda.synchronize``; medians. A batch size that would not fit in the
5-minute budget is skipped and said so. Peak fraction: UNet FLOPs of one forward at batch 1
(``FlopCounterMode`` on the meta device) x2 for CFG x steps x images over the seconds; VAE
and text encoders uncounted, so a lower bound. ``loop_it_s``: denoising steps a second from
the end of the first step to the end of the last, diffusers' progress-bar rate, the one of
the reference (stable-fast on an H100 at batch 1: SD1.5 104.6 it/s, SDXL 21.6 it/s).

``measure(quick=...)`` returns what is printed: ``measured`` (false, with a ``reason``,
without CUDA), ``device``, ``peak_tflops``, ``dtype``, ``settings``, ``gpu_setup``
(engine.gpu's log lines), ``models`` (per model ``side``, ``steps``, ``build_s``,
``unet_tflop_per_forward``, ``tflop_per_image``, ``batches``: per batch size
``{worker,bare}_s_per_image``, ``_tflops``, ``_peak_fraction``, ``_loop_it_s``,
``worker_over_bare``, ``rounds``, or ``skipped``), ``nonfinite_warnings`` (images the worker
rendered or decoded again: they distort its time), ``compiles``, ``reference``, ``elapsed_s``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import timed  # noqa: E402
from engine.settings import Settings  # noqa: E402

PROMPT = "product photo of a leather handbag on a marble table, soft light, high detail"
NEGATIVE = "blurry, low quality, watermark"
SAMPLER = "DPM++ 2M Karras"
CFG = 7.0
BUDGET_S = 270.0  # the whole run, model builds included: under 5 minutes
REFERENCE = {"stable_fast_h100_batch1_it_s": {"sd15": 104.6, "sdxl": 21.6}}
# Dense (no sparsity) fp16/bf16 tensor TFLOP/s; the most specific name first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("V100", 125.0),
    ("T4", 65.0),
)


@dataclass(frozen=True)
class Case:
    """One model measured: its catalog name, family, size and steps."""

    name: str
    family: str
    side: int
    steps: int
    until: float  # share of the run's time budget by which its measurements end
    tiny: bool = False  # engine.tiny's built-in instead of the family's configs


# SD1.5 needs about a fifth of SDXL's time; SDXL's model build comes after SD1.5's share.
GPU_CASES = (Case("sd15", "sd15", 512, 25, 0.35), Case("sdxl", "sdxl", 1024, 30, 1.0))
DRY_CASES = (
    Case("tiny", "sd15", 64, 2, 0.5, tiny=True),
    Case("tiny-xl", "sdxl", 64, 2, 1.0, tiny=True),
)


def measure(
    *, quick: bool = False, dry_run: bool = False, dtype: str = "fp16", compile_unet: bool = False
) -> dict[str, Any]:
    """Run the benchmark (see the module's docstring) and return its results. ``dry_run``:
    on the CPU with the tiny models at 64 px and 2 steps, to check the code path."""
    started = time.perf_counter()
    import torch

    if not dry_run and not torch.cuda.is_available():
        return {"bench": "gpu", "measured": False, "reason": "no CUDA device"}
    import diffusers

    device = "cpu" if dry_run else "cuda"
    if dry_run:
        # It checks the code path, not speed: one thread stays quick on a busy small machine.
        torch.set_num_threads(1)
    batches = (1, 2) if dry_run else (1, 4) if quick else (1, 4, 8)
    rounds = 1 if dry_run or quick else 2
    name = "cpu" if dry_run else torch.cuda.get_device_name()
    peak = None if dry_run else peak_tflops(name)
    notes = _LogLines()
    result: dict[str, Any] = {
        "bench": "gpu",
        "measured": True,
        "dry_run": dry_run,
        "device": name,
        "peak_tflops": peak,
        "dtype": "fp32" if dry_run else dtype,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "settings": {"compile_unet": compile_unet, "sampler": SAMPLER, "cfg": CFG},
        "reference": REFERENCE,
    }
    with tempfile.TemporaryDirectory(prefix="proofroom-bench-gpu-") as tmp:
        settings = _settings(Path(tmp), device=device, dtype=dtype, compile_unet=compile_unet)
        result["settings"].update(
            vae_slicing=settings.vae_slicing, vae_tile_pixels=settings.vae_tile_pixels
        )
        models = {}
        for case in DRY_CASES if dry_run else GPU_CASES:
            models[case.name] = _measure_case(
                case,
                settings=settings,
                store_dir=Path(tmp) / "artifacts",
                batches=batches,
                rounds=rounds,
                peak=peak,
                deadline=started + BUDGET_S * case.until,
            )
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # the last model's memory, before the next is built
        result["models"] = models
    if dry_run:  # the real architectures' FLOPs, from the shipped configs (meta device)
        result["real_unet_tflop_per_forward"] = {
            family: _round(unet_flops(_config_unet(family), side=side) / 1e12)
            for family, side in (("sd15", 512), ("sdxl", 1024))
        }
    from engine import gpu

    result["compiles"] = {"count": gpu.COMPILES.count, "seconds": _round(gpu.COMPILES.seconds)}
    result["gpu_setup"] = notes.setup
    result["nonfinite_warnings"] = notes.nonfinite
    result["elapsed_s"] = _round(time.perf_counter() - started)
    notes.close()
    return result


def peak_tflops(device_name: str) -> float | None:
    """Dense fp16 tensor TFLOP/s of GPU ``device_name`` (``torch.cuda.get_device_name()``),
    None when it is not in the table."""
    for key, tflops in PEAK_TFLOPS:
        if re.search(rf"\b{re.escape(key)}\b", device_name):
            return tflops
    return None


def unet_flops(unet_config: Any, *, side: int, vae_scale: int = 8) -> int:
    """FLOPs of one UNet forward at batch 1 for ``side`` x ``side`` images, counted on the
    meta device (nothing allocated, nothing computed)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    config = dict(unet_config)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config).eval()
        latent = side // vae_scale
        sample = torch.zeros(1, config["in_channels"], latent, latent)
        timestep = torch.tensor([999.0])
        text = torch.zeros(1, 77, config["cross_attention_dim"])
        extra: dict[str, Any] = {}
        if config.get("addition_embed_type") == "text_time":  # SDXL: pooled text + sizes
            pooled = config["projection_class_embeddings_input_dim"]
            pooled -= 6 * config["addition_time_embed_dim"]
            extra["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(1, pooled),
                "time_ids": torch.zeros(1, 6),
            }
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, timestep, encoder_hidden_states=text, **extra)
    return int(counter.get_total_flops())


def build(case: Case, *, device: str) -> Any:
    """The pipeline of ``case`` with random weights, in fp32 on ``device``: engine.tiny's
    built-in, or the family's architecture from engine/configs (built on the device itself,
    where random initialisation takes a moment rather than minutes)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine import tiny
    from engine.clip_vocab import CONFIGS_DIR
    from engine.samplers import make_scheduler

    if case.tiny:
        return tiny.load(case.name)
    folder = CONFIGS_DIR / case.family
    torch.manual_seed(0)
    with torch.device(device):
        modules: dict[str, Any] = {
            "unet": _config_unet(case.family, build=True),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        }
        if case.family == "sdxl":
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            modules["text_encoder_2"] = CLIPTextModelWithProjection(config)
    for module in modules.values():
        module.eval()
    scheduler_config = json.loads((folder / "scheduler/scheduler_config.json").read_text())
    scheduler = make_scheduler("Euler", scheduler_config)  # each job installs its own
    if case.family == "sdxl":
        return StableDiffusionXLPipeline(
            **modules,
            tokenizer=tiny.tokenizer(),
            tokenizer_2=tiny.tokenizer(),
            scheduler=scheduler,
            add_watermarker=False,
        )
    return StableDiffusionPipeline(
        **modules,
        tokenizer=tiny.tokenizer(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _measure_case(
    case: Case,
    *,
    settings: Settings,
    store_dir: Path,
    batches: tuple[int, ...],
    rounds: int,
    peak: float | None,
    deadline: float,
) -> dict[str, Any]:
    import torch

    from engine.catalog import Catalog
    from engine.pipelines import PipelineCache
    from engine.prompts import encode_prompts
    from engine.render import render
    from engine.samplers import make_scheduler
    from engine.spec import new_spec
    from engine.store import LocalStore

    class BuiltCache(PipelineCache):
        """The worker's cache, except that a load hands over the pipeline built in memory
        (reading gigabytes of weights would measure the disk, not the GPU)."""

        def _load(self, model: Any, *, vae: Any = None) -> Any:
            return self._place(built.pop("pipe"))

    cuda = settings.device == "cuda"
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else lambda: None
    started = time.perf_counter()
    built = {"pipe": build(case, device=settings.device or "cpu")}
    cache = BuiltCache(settings=settings)
    catalog = Catalog.load(settings.templates_dir)
    model = catalog.model(case.name)
    loaded, _ = cache.acquire(model)  # the cache holds it now, in its dtype
    sync()
    out: dict[str, Any] = {
        "side": case.side,
        "steps": case.steps,
        "build_s": _round(time.perf_counter() - started),
    }
    flops = unet_flops(
        loaded.pipe.unet.config, side=case.side, vae_scale=loaded.pipe.vae_scale_factor
    )
    per_image = 2 * flops * case.steps  # CFG: two UNet forwards a step
    out["unet_tflop_per_forward"] = _round(flops / 1e12)
    out["tflop_per_image"] = _round(per_image / 1e12)
    store = LocalStore(store_dir)
    pipe = loaded.pipe
    embeds = encode_prompts(pipe, PROMPT, NEGATIVE).kwargs()
    scheduler = make_scheduler(SAMPLER, loaded.base_scheduler_config)

    def worker(n: int, steps: int, clock: _StepClock | None = None) -> None:
        spec = new_spec(
            limits=settings.limits,
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            model=case.name,
            sampler=SAMPLER,
            steps=steps,
            cfg_scale=CFG,
            width=case.side,
            height=case.side,
            count=n,
            seed=1234,
        )
        progress = clock.progress if clock else None
        render(spec, cache=cache, store=store, catalog=catalog, on_progress=progress)

    def bare(n: int, steps: int, clock: _StepClock | None = None) -> None:
        with loaded.lock:
            pipe.scheduler = scheduler
            pipe(
                **embeds,
                num_inference_steps=steps,
                guidance_scale=CFG,
                num_images_per_prompt=n,
                height=case.side,
                width=case.side,
                generator=torch.Generator("cpu").manual_seed(1234),
                callback_on_step_end=clock.step_end if clock else None,
                output_type="pil",
            )

    paths: dict[str, Callable[..., None]] = {"worker": worker, "bare": bare}
    out["batches"] = {}
    for n in batches:
        if time.perf_counter() > deadline:
            out["batches"][str(n)] = {"skipped": "time budget"}
            continue
        warm = {label: timed(partial(f, n, 2), sync) for label, f in paths.items()}
        if settings.compile_unet:  # the first warm-up compiled for this batch size
            warm = {label: timed(partial(f, n, 2), sync) for label, f in paths.items()}
        # Two warm-up steps, the decode included, scaled to the full steps: an upper bound.
        one_round = sum(warm.values()) * case.steps / 2
        fit = min(rounds, int((deadline - time.perf_counter()) // max(one_round, 1e-9)))
        if fit < 1:
            out["batches"][str(n)] = {"skipped": "time budget"}
            continue
        times: dict[str, list[float]] = {label: [] for label in paths}
        clocks: dict[str, list[float]] = {label: [] for label in paths}
        for r in range(fit):
            for label in ("worker", "bare") if r % 2 == 0 else ("bare", "worker"):
                clock = _StepClock(sync)
                times[label].append(timed(partial(paths[label], n, case.steps, clock), sync))
                if clock.rate is not None:
                    clocks[label].append(clock.rate)
        row: dict[str, Any] = {"rounds": fit}
        for label in paths:
            seconds = statistics.median(times[label]) / n
            row[f"{label}_s_per_image"] = _round(seconds)
            tflops = per_image / seconds / 1e12
            row[f"{label}_tflops"] = _round(tflops)
            row[f"{label}_peak_fraction"] = _round(tflops / peak) if peak else None
            # Steps a second of the denoising loop (each step serves all n images).
            row[f"{label}_loop_it_s"] = _round(statistics.median(clocks[label]))
        row["worker_over_bare"] = _round(row["worker_s_per_image"] / row["bare_s_per_image"])
        out["batches"][str(n)] = row
    if case.family in REFERENCE["stable_fast_h100_batch1_it_s"] and "1" in out["batches"]:
        ours = out["batches"]["1"].get("bare_loop_it_s")
        ref = REFERENCE["stable_fast_h100_batch1_it_s"][case.family]
        out["bare_loop_vs_stable_fast"] = _round(ours / ref) if ours and not case.tiny else None
    return out  # the cache and its pipeline go with this frame


class _StepClock:
    """Steps a second of the denoising loop: from the end of the first step to the end of
    the last, synchronised at those two points only."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0

    def _tick(self, final: bool) -> None:
        self.count += 1
        if self.first is None or final:
            self.sync()
            now = time.perf_counter()
            if self.first is None:
                self.first = now
            if final:
                self.last = now

    def progress(self, done: int, total: int) -> None:
        """``on_progress`` of ``engine.render.render``."""
        self._tick(done >= total)

    def step_end(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
        """``callback_on_step_end`` of a diffusers pipeline."""
        self._tick(step + 1 >= pipe.num_timesteps)
        return kwargs

    @property
    def rate(self) -> float | None:
        if self.first is None or self.last is None or self.count < 2:
            return None
        return (self.count - 1) / (self.last - self.first)


class _LogLines(logging.Handler):
    """engine.gpu's setup lines, and the count of engine's warnings about non-finite images."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setup: list[str] = []
        self.nonfinite = 0
        self.logger = logging.getLogger("engine")
        self.level_before = self.logger.level
        self.logger.addHandler(self)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)  # records reach us; root prints only warnings

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name == "engine.gpu":
            self.setup.append(message)
        elif record.levelno >= logging.WARNING and "not finite" in message:
            self.nonfinite += 1

    def close(self) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)
        super().close()


def _config_unet(family: str, *, build: bool = False) -> Any:
    """The UNet config of ``family`` from engine/configs; ``build``: the UNet itself."""
    from diffusers import UNet2DConditionModel

    from engine.clip_vocab import CONFIGS_DIR

    config = UNet2DConditionModel.load_config(CONFIGS_DIR / family / "unet")
    return UNet2DConditionModel.from_config(config) if build else config


def _settings(tmp: Path, *, device: str, dtype: str, compile_unet: bool) -> Settings:
    # The developer's own model folders and .env stay out of the measurement.
    empty = tmp / "none"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp / "data",
        model_cache_dir=tmp / "models",
        model_dir=empty / "models",
        lora_dir=empty / "loras",
        embedding_dir=empty / "embeddings",
        vae_dir=empty / "vaes",
        a1111_dir=None,
        device=device,
        cuda_dtype=dtype,
        cpu_offload="none",
        compile_unet=compile_unet,
        pipeline_cache_bytes=64 * 1024**3,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="batches 1 and 4, one round")
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny models, 64 px: check the code path"
    )
    parser.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16")
    parser.add_argument("--compile", action="store_true", help="PROOFROOM_COMPILE_UNET=true")
    args = parser.parse_args(argv)
    result = measure(
        quick=args.quick, dry_run=args.dry_run, dtype=args.dtype, compile_unet=args.compile
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
