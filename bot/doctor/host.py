"""This host: free disk for the store, and what the engine can do here (``engine.probe`` in a
child process: torch, the GPU, and which models are present or load)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.doctor.report import Check

GIB = 1024**3
# Below this the store fills within a day of heavy use (an SDXL PNG is about 1.5 MB, a
# 50-row batch of 3 variations about 225 MB) and model downloads fail.
MIN_FREE_GIB = 5.0
PROBE_TIMEOUT_S = 600  # --load on a big catalog loads every model


def disk_check(*, folder: Path, what: str) -> Check:
    """Free space on the file system that holds ``folder`` (or its nearest existing parent)."""
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    free_gib = shutil.disk_usage(existing).free / GIB
    detail = f"{free_gib:.1f} GiB free for {what} ({folder})"
    if free_gib < MIN_FREE_GIB:
        return Check(
            "disk",
            "warn",
            detail,
            fix=f"free space or move PROOFROOM_DATA_DIR; under {MIN_FREE_GIB:.0f} GiB "
            "renders and downloads start failing",
        )
    return Check("disk", "ok", detail)


def engine_probe(*, load: bool) -> dict[str, Any] | str:
    """The engine's facts (see ``engine.probe``), or a sentence when they cannot be had."""
    command = [sys.executable, "-m", "engine.probe"] + (["--load"] if load else [])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"the engine probe took over {PROBE_TIMEOUT_S} s"
    if done.returncode != 0:
        if "No module named 'torch'" in done.stderr or "No module named 'diffusers'" in done.stderr:
            return "no engine on this host (torch is not installed: a chat-only install)"
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the engine probe failed: {last}"
    try:
        facts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return "the engine probe printed no report"
    return facts


def gpu_check(facts: dict[str, Any] | str) -> Check:
    """The device a worker here would render on."""
    if isinstance(facts, str):
        return Check("gpu", "skip", f"{facts}; run the doctor on a worker host for the GPU")
    dtype = facts.get("dtype", "?")
    gpus = facts.get("gpus") or []
    if facts.get("device", "cpu").startswith("cuda") and gpus:
        names = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in gpus)
        return Check("gpu", "ok", f"{names}; pipelines in {dtype}, torch {facts.get('torch')}")
    if facts.get("device", "cpu").startswith("cuda"):
        return Check(
            "gpu",
            "fail",
            "PROOFROOM_DEVICE asks for cuda but torch sees no GPU",
            fix="check the NVIDIA driver and, in Docker, the GPU reservation (docs/deploy.md)",
        )
    return Check(
        "gpu",
        "warn",
        f"no GPU visible: renders run on the {facts.get('device', 'cpu')} in {dtype} "
        f"(minutes per image), torch {facts.get('torch')}",
        fix="install the NVIDIA driver and a CUDA build of torch, or run workers on a GPU host",
    )


def model_checks(facts: dict[str, Any] | str, *, loaded: bool) -> list[Check]:
    """A line per catalog model: present here (or loaded, with ``--load``), or how to get it."""
    if isinstance(facts, str):
        return [Check("models", "skip", f"{facts}; `proofroom models` lists the catalog")]
    if facts.get("catalog_error"):
        return [
            Check(
                "models",
                "fail",
                f"the catalog does not load: {facts['catalog_error']}",
                fix="correct templates/models.yaml (`proofroom models` shows the same error)",
            )
        ]
    checks = [folder_check(facts)]
    for model in facts.get("models", []):
        name = f"model {model['name']} ({model['family']})"
        status = model["status"]
        if status == "ok":
            what = "loads" if loaded else "present"
            checks.append(Check("models", "ok", f"{name} {what}: {model['detail']}"))
        elif status in ("download", "missing"):  # the others serve; this one waits or fails
            checks.append(Check("models", "warn", f"{name}: {model['detail']}"))
        else:  # there, but it does not load (--load): a broken download or wrong layout
            checks.append(
                Check(
                    "models",
                    "fail",
                    f"{name} does not load: {model['detail']}",
                    fix="download it again, or remove it from templates/models.yaml",
                )
            )
    for problem in facts.get("problems", []):
        checks.append(
            Check(
                "models",
                "warn",
                f"{problem['path']} ({problem['kind']}) cannot be used: {problem['reason']}",
                fix="replace or remove the file (`proofroom models` lists these too)",
            )
        )
    if not facts.get("models"):
        checks.append(
            Check("models", "fail", "the catalog has no model", fix="add one to models.yaml")
        )
    return checks


def folder_check(facts: dict[str, Any]) -> Check:
    """The drop-in folder of single-file checkpoints (``PROOFROOM_MODEL_DIR``)."""
    folder = facts.get("model_dir", "models")
    if facts.get("model_dir_exists"):
        return Check("models", "ok", f"model folder {folder} is there; its files are listed below")
    return Check(
        "models",
        "skip",
        f"no model folder at {folder} (PROOFROOM_MODEL_DIR): only models.yaml entries are used",
    )
