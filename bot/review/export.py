"""Approved images leave the review as files: ``<job>-<index>-<seed>.png`` with a
``.json`` sidecar holding everything needed to render the image again and to know who
approved it, and what the worker's automated QA found (``qa``: scores and flags, from the
PNG's ``proofroom`` chunk; null for an image rendered without QA). The PNG is the stored
artifact byte for byte, so its A1111 ``parameters`` chunk survives.

``spec`` is the job's whole ``JobSpec`` and ``chain`` the link to the image it was made
from (a variation's or an upscale's parent, strength, scale, tile size), so that
``proofroom generate --from <sidecar>`` renders the image again (``bot.jobs.remake``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.records import ImageRecord
from engine.metadata import read_parameters, read_proofroom
from engine.spec import JobSpec, Mode
from engine.store import ArtifactStore, atomic_write


def export_name(image: ImageRecord) -> str:
    """File stem of an exported image (unique per job, image and seed)."""
    return f"{image.job_id}-{image.index}-{image.seed}"


def export_image(
    *,
    store: ArtifactStore,
    image: ImageRecord,
    spec: JobSpec,
    approvers: list[str],
    folder: Path,
) -> tuple[Path, Path]:
    """Write the PNG and its sidecar into ``folder``; return both paths. Writing again (one
    more approval) replaces both."""
    folder.mkdir(parents=True, exist_ok=True)
    png = store.get(image.artifact_id)
    png_path = folder / f"{export_name(image)}.png"
    sidecar_path = png_path.with_suffix(".json")
    atomic_write(png_path, png)
    content = sidecar(image=image, spec=spec, approvers=approvers, parameters=read_parameters(png))
    content["qa"] = (read_proofroom(png) or {}).get("qa")  # the worker's scores and flags
    atomic_write(sidecar_path, json.dumps(content, indent=2).encode())
    return png_path, sidecar_path


def unexport(paths: list[Path]) -> None:
    """Take an image back out of the export (its approval was withdrawn)."""
    for path in paths:
        path.unlink(missing_ok=True)


def sidecar(
    *, image: ImageRecord, spec: JobSpec, approvers: list[str], parameters: str | None
) -> dict[str, Any]:
    """The sidecar's content: prompt, parameters, model, LoRAs, approvals and lineage."""
    return {
        "job_id": spec.id,
        "index": image.index,
        "seed": image.seed,
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "model": spec.model,
        "loras": [{"name": ref.name, "weight": ref.weight} for ref in spec.loras],
        "params": {
            "mode": spec.mode.value,
            "sampler": spec.sampler,
            "steps": spec.steps,
            "cfg_scale": spec.cfg_scale,
            "width": image.width,
            "height": image.height,
            "job_seed": spec.seed,
            "count": spec.count,
        },
        "template": spec.template,
        "variables": spec.variables,
        "parent": spec.parent,
        "requested_by": spec.requested_by,
        "approved_by": approvers,
        "approved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "artifact_id": image.artifact_id,
        "origin": spec.origin,
        "a1111_parameters": parameters,
        "chain": chain(spec),
        "spec": spec.model_dump(mode="json"),
    }


def chain(spec: JobSpec) -> dict[str, Any] | None:
    """How an image made from another one was made from it: its parent (``job/index``)
    and input, and the strength, scale and tiles; None for an image made from text."""
    if spec.parent is None and spec.init_image is None:
        return None
    link: dict[str, Any] = {
        "parent": spec.parent,
        "mode": spec.mode.value,
        "init_image": spec.init_image,
        "seed": spec.seed,
        "strength": spec.strength,
    }
    if spec.mode is Mode.upscale:
        link.update(
            scale=spec.scale,
            tile_size=spec.tile_size,
            tile_overlap=spec.tile_overlap,
            upscaler=spec.upscaler,
        )
    return link
