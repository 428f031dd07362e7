"""Switching LoRA sets between jobs vs loading a model, measured side by side in one run.

    python bench/lora_swap.py                       # the tiny model and its two test LoRAs
    python bench/lora_swap.py --sd15-random         # and SD1.5's architecture, random weights
    python bench/lora_swap.py --model sd15 --loras detail-tweaker film-grain --rounds 20

What is timed, with the worker's own code (``engine.pipelines``), in rounds that interleave
the four so that a machine getting busier slows all of them alike:

- model load: a fresh ``PipelineCache`` loading the model from disk (a built-in model is
  first saved as a diffusers folder, so its load reads files like a real one; the file is in
  the OS page cache after the first load, the cheapest a reload gets);
- LoRA first load: reading a LoRA file into the warm pipeline as a named adapter (once per
  file, before the rounds);
- LoRA switch: activating the other resident set with its weights (``set_adapters``),
  what a job pays when its LoRAs differ from the previous job's;
- LoRA off: a job without LoRAs after one with (``disable_lora``).

``--sd15-random``: the same on Stable Diffusion 1.5's architecture (``engine/configs/sd15``)
with random weights (built as ``bench/gpu.py`` builds it) and saved as a diffusers folder
(about 4 GB), with two random LoRAs in the diffusers layout on the UNet's attention and
feed-forward layers and the text encoder's attention and MLP layers (rank 16, what kohya-ss
LoRAs commonly are): the tiny model's load is unusually cheap (about 5 MB), so its ratio
says little about a real model's. It takes one to two minutes on a 2-core CPU.

Prints medians and the ratio LoRA switch / model load. ``measure(quick=..., redis_url=...)``
returns the figures as a dict (``bench/run.py``): ``tiny`` and ``sd15_random`` (or, with
``quick``, why not). Weights are never downloaded: a Hub model must already be in the local
cache (HF_HUB_OFFLINE=1 is set here).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import timed  # noqa: E402
from engine.catalog import Catalog, ModelEntry  # noqa: E402
from engine.settings import Settings  # noqa: E402

GOAL_SWITCH_OVER_LOAD = 0.05  # a LoRA switch should cost at most this share of a model load
SD15_LORA_RANK = 16
# Linear layers a typical SD1.5 LoRA trains: attention and feed-forward in the UNet's
# transformer blocks, attention and MLP in the text encoder.
SD15_LORA_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "ff.net.0.proj",
    "ff.net.2",
    "q_proj",
    "k_proj",
    "v_proj",
    "out_proj",
    "fc1",
    "fc2",
)
LoraFile = tuple[str, Path, float]  # (adapter name, file, weight), as the worker passes them


def measure(
    *, quick: bool = False, redis_url: str | None = None, sd15_random: bool | None = None
) -> dict[str, Any]:
    """Run the benchmark on the tiny model and, unless ``quick`` (or ``sd15_random`` is
    False), on SD1.5's architecture with random weights; return the figures of each.
    ``redis_url`` is accepted as by every bench module's ``measure`` and unused."""
    del redis_url
    _quiet()
    rounds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="proofroom-bench-") as tmp:
        settings = _settings(Path(tmp))
        figures: dict[str, Any] = {
            "what": "LoRA switch between two resident sets vs a model load from disk",
            "goal_switch_over_load": GOAL_SWITCH_OVER_LOAD,
            "tiny": catalog_model(settings=settings, model="tiny", rounds=rounds),
        }
        if sd15_random is None:
            sd15_random = not quick
        if sd15_random:
            figures["sd15_random"] = sd15_random_model(settings=settings, rounds=3)
        else:
            figures["sd15_random"] = {
                "measured": False,
                "reason": "a quick run skips it (building SD1.5 takes about a minute)",
            }
        return figures


def catalog_model(
    *,
    settings: Settings,
    model: str,
    loras: tuple[str, str] = ("tiny-style", "tiny-brand"),
    rounds: int,
) -> dict[str, Any]:
    """The figures of catalog model ``model`` with catalog LoRAs ``loras``."""
    from engine import tiny
    from engine.pipelines import PipelineCache

    catalog = Catalog.load(settings.templates_dir)
    entry = catalog.model(model)
    if entry.source.startswith("builtin:"):
        # Save the built-in as a diffusers folder so the load below reads it from disk.
        folder = settings.data_dir / entry.name
        tiny.load(entry.source.removeprefix("builtin:")).save_pretrained(folder)
        entry = ModelEntry(**{**entry.model_dump(), "source": str(folder)})
    cache = PipelineCache(settings=settings)
    first, second = (catalog.lora(name, family=entry.family) for name in loras)
    sets = (
        (first.name, cache.lora_path(first), first.weight),
        (second.name, cache.lora_path(second), second.weight),
    )
    return {"model": model, **_timings(settings=settings, model=entry, loras=sets, rounds=rounds)}


def sd15_random_model(*, settings: Settings, rounds: int) -> dict[str, Any]:
    """The figures of SD1.5's architecture with random weights and two random LoRAs."""
    import torch

    started = time.perf_counter()
    pipe = sd15_random_pipeline()
    folder = settings.data_dir / "sd15-random"
    pipe.save_pretrained(folder)
    loras = [
        ("random-a", random_lora(pipe, settings.data_dir / "random-a.safetensors", seed=1), 0.8),
        ("random-b", random_lora(pipe, settings.data_dir / "random-b.safetensors", seed=2), 0.8),
    ]
    layers = sum(
        isinstance(layer, torch.nn.Linear) and name.endswith(SD15_LORA_TARGETS)
        for component in (pipe.unet, pipe.text_encoder)
        for name, layer in component.named_modules()
    )
    del pipe
    gc.collect()
    prepared_s = time.perf_counter() - started
    model = ModelEntry(name="sd15-random", source=str(folder), family="sd15")
    first, second = loras
    figures = _timings(settings=settings, model=model, loras=(first, second), rounds=rounds)
    return {
        "model": "SD1.5 architecture (engine/configs/sd15), random weights, fp32 on disk",
        "model_gib": round(
            sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30, 2
        ),
        "lora_rank": SD15_LORA_RANK,
        "lora_layers": layers,
        "build_and_save_s": round(prepared_s, 1),
        **figures,
    }


def sd15_random_pipeline() -> Any:
    """SD1.5's architecture from ``engine/configs/sd15`` with random weights, fp32 on the CPU,
    with ``engine.tiny``'s tokenizer (its ids lie within CLIP's vocabulary), as
    ``bench/gpu.py`` builds it: the weights do not change what a load or a switch costs."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from diffusers import UNet2DConditionModel as UNet
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine import tiny
    from engine.clip_vocab import CONFIGS_DIR

    folder = CONFIGS_DIR / "sd15"
    torch.manual_seed(0)
    return StableDiffusionPipeline(
        unet=UNet.from_config(UNet.load_config(folder / "unet")).eval(),
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")).eval(),
        tokenizer=tiny.tokenizer(),
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(folder / "scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def random_lora(pipe: Any, path: Path, *, seed: int) -> Path:
    """A LoRA of rank :data:`SD15_LORA_RANK` with random weights for ``pipe``'s UNet and
    text encoder, in the diffusers layout (``unet.<module>.lora_A.weight``) that
    ``load_lora_weights`` reads; small deltas (their size does not change the timings)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, component in (("unet", pipe.unet), ("text_encoder", pipe.text_encoder)):
        for name, layer in component.named_modules():
            if isinstance(layer, torch.nn.Linear) and name.endswith(SD15_LORA_TARGETS):
                down = torch.randn(SD15_LORA_RANK, layer.in_features, generator=generator)
                up = torch.randn(layer.out_features, SD15_LORA_RANK, generator=generator)
                tensors[f"{prefix}.{name}.lora_A.weight"] = down / math.sqrt(layer.in_features)
                tensors[f"{prefix}.{name}.lora_B.weight"] = up * 0.01
    save_file(tensors, str(path))
    return path


def _timings(
    *, settings: Settings, model: ModelEntry, loras: tuple[LoraFile, LoraFile], rounds: int
) -> dict[str, Any]:
    """Model load, LoRA first load, switch and off, interleaved in ``rounds`` rounds."""
    import torch

    from engine.pipelines import PipelineCache

    device = PipelineCache(settings=settings).device

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fresh: list[Any] = []

    def load() -> None:
        cache = PipelineCache(settings=settings)
        cache.acquire(model)
        fresh.append(cache)  # freed after the clock stops: freeing is not loading

    cache = PipelineCache(settings=settings)
    loaded, _ = cache.acquire(model)
    set_a, set_b = [loras[0]], [loras[1]]
    first_load = [timed(lambda: loaded.use_loras(set_a), sync)]
    first_load.append(timed(lambda: loaded.use_loras(set_b), sync))
    loads: list[float] = []
    switches: list[float] = []
    offs: list[float] = []
    for _ in range(rounds):
        loads.append(timed(load, sync))
        fresh.clear()
        gc.collect()  # the fresh copy goes before the next one comes
        switches.append(timed(lambda: loaded.use_loras(set_a), sync))
        switches.append(timed(lambda: loaded.use_loras(set_b), sync))
        offs.append(timed(lambda: loaded.use_loras([]), sync))
        loaded.use_loras(set_b)  # the next round's first switch starts from a LoRA set
    load_s, switch_s = statistics.median(loads), statistics.median(switches)
    return {
        "device": device,
        "rounds": rounds,
        "model_load_ms": _ms(load_s),
        "lora_first_load_ms": _ms(statistics.median(first_load)),
        "lora_switch_ms": _ms(switch_s),
        "lora_off_ms": _ms(statistics.median(offs)),
        "lora_files_read": sum(cache.lora_reads.values()),
        "switch_over_load": round(switch_s / load_s, 4),
    }


def _quiet() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()  # the figures are the output
    transformers_logging.disable_progress_bar()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _settings(tmp: Path, *, device: str | None = None, model_cache: Path | None = None) -> Settings:
    # The developer's own model folders and .env stay out of the measurement.
    empty = tmp / "none"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp / "data",
        model_cache_dir=model_cache or Path(".proofroom/models"),
        model_dir=empty / "models",
        embedding_dir=empty / "embeddings",
        vae_dir=empty / "vaes",
        device=device,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = _parser().parse_args(argv)
    _quiet()
    with tempfile.TemporaryDirectory(prefix="proofroom-bench-") as tmp:
        settings = _settings(Path(tmp), device=args.device, model_cache=Path(args.model_cache))
        cases = {
            args.model: catalog_model(
                settings=settings, model=args.model, loras=tuple(args.loras), rounds=args.rounds
            )
        }
        if args.sd15_random:
            cases["SD1.5, random weights"] = sd15_random_model(settings=settings, rounds=3)
    for name, f in cases.items():
        print(f"model {name} on {f['device']}, {f['rounds']} rounds")
        print(f"{'what':<24}{'median':>12}")
        for label, key in (
            ("model load (from disk)", "model_load_ms"),
            ("LoRA first load", "lora_first_load_ms"),
            ("LoRA switch A <-> B", "lora_switch_ms"),
            ("LoRA off", "lora_off_ms"),
        ):
            print(f"{label:<24}{f[key]:>9.1f} ms")
        print(f"LoRA files read: {f['lora_files_read']} (one per file, however many switches)")
        print(
            f"LoRA switch / model load: {f['switch_over_load']:.3f} "
            f"(goal: at most {GOAL_SWITCH_OVER_LOAD})"
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="tiny", help="catalog model name (default tiny)")
    parser.add_argument(
        "--loras",
        nargs=2,
        default=["tiny-style", "tiny-brand"],
        metavar=("A", "B"),
        help="two catalog LoRAs of the model's family",
    )
    parser.add_argument(
        "--sd15-random",
        action="store_true",
        help="also SD1.5's architecture with random weights (about 4 GB on disk, 1-2 min)",
    )
    parser.add_argument(
        "--rounds", "--repeats", type=int, default=15, help="rounds: load, switches, off"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda... (default: auto)")
    parser.add_argument("--model-cache", default=".proofroom/models", help="model cache dir")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
