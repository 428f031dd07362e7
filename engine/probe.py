"""What this host can render: torch, the GPU, the dtype, and which catalog models are here.

``python -m engine.probe [--load]`` prints one JSON object. ``proofroom doctor`` runs it in a
child process, so the chat side never imports torch itself, and on a host without the engine
installed (the bot image) the child's failure to import torch is the answer: "no engine here".

Without ``--load`` a model is checked where its weights would come from (a file or folder on
disk, the Hugging Face cache for a Hub id), which takes a moment even for large models; with
``--load`` each one is loaded as the worker would (seconds to minutes per model, its memory
too), one after another, each freed before the next.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

from engine.catalog import ModelEntry
from engine.gpu import pipeline_dtype, resolve_device
from engine.model_folders import load_catalog
from engine.settings import Settings, get_settings
from engine.sources import hub_sentence, looks_like_path, missing_path_sentence

DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def gpu_facts(settings: Settings) -> dict[str, Any]:
    """The device pipelines would run on, its dtype, and the GPU's name and memory."""
    device = resolve_device(settings)
    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device,
        "dtype": DTYPE_NAMES.get(pipeline_dtype(device=device, settings=settings), "?"),
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            facts["gpus"].append(
                {
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return facts


def model_presence(model: ModelEntry) -> tuple[str, str]:
    """``("ok", where)`` when the weights of ``model`` are on this host; ``("download", ...)``
    when a worker here would download them on first use; ``("missing", sentence)`` saying how
    an admin gets them when it cannot. Nothing is downloaded."""
    source = model.source
    if source.startswith("builtin:"):
        return "ok", "built in (offline test model)"
    path = Path(source).expanduser()
    if path.exists():
        return "ok", str(path)
    if looks_like_path(source):
        return "missing", missing_path_sentence(kind="model", name=model.name, source=source)
    try:
        folder = snapshot_download(source, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        if constants.HF_HUB_OFFLINE:
            return "missing", hub_sentence(
                kind="model", name=model.name, source=source, offline=True
            )
        return "download", (
            f"`{source}` is not in the Hugging Face cache yet: a worker downloads it when the "
            f"first job asks for it (that job waits), or run `hf download {source}` now"
        )
    return "ok", f"{source} in the Hugging Face cache ({folder})"


def model_load(model: ModelEntry, *, settings: Settings) -> tuple[str, str]:
    """``("ok", how long)`` when the worker's own loader loads ``model`` here; else
    ``("error", its one-line reason)``. The pipeline is freed before returning."""
    # diffusers only for --load: importing it takes longer than the rest of the probe.
    from engine.pipelines import PipelineCache  # noqa: PLC0415

    cache = PipelineCache(settings=settings)
    device = cache.device
    try:
        _, seconds = cache.acquire(model)
    except Exception as exc:  # the probe reports every failure as data, one line each
        first_line = (str(exc).splitlines() or [""])[0]
        return "error", f"{type(exc).__name__}: {first_line}"
    finally:
        del cache  # the only reference to the pipeline: freed before the next model loads
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return "ok", f"loaded in {seconds:.1f}s on {device}"


def probe(*, settings: Settings, load: bool) -> dict[str, Any]:
    """Everything the doctor asks the engine, as JSON-ready data."""
    facts = gpu_facts(settings)
    try:
        catalog = load_catalog(settings)
    except ValueError as exc:
        facts["catalog_error"] = str(exc)
        facts["models"] = []
        return facts
    models = []
    for model in catalog.models.values():
        status, detail = model_presence(model)
        if load and status == "ok":
            status, detail = model_load(model, settings=settings)
        models.append(
            {"name": model.name, "family": model.family, "status": status, "detail": detail}
        )
    facts["models"] = models
    facts["model_dir"] = str(settings.model_dir)
    facts["model_dir_exists"] = settings.model_dir.is_dir()
    facts["problems"] = [
        {"path": str(problem.path), "kind": problem.kind, "reason": problem.reason}
        for problem in catalog.problems
    ]
    return facts


def main(argv: list[str] | None = None) -> int:
    """Print the probe as JSON on standard output."""
    parser = argparse.ArgumentParser(prog="python -m engine.probe", description=__doc__)
    parser.add_argument("--load", action="store_true", help="load every model (slow)")
    args = parser.parse_args(argv)
    json.dump(probe(settings=get_settings(), load=args.load), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
