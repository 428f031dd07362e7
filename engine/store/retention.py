"""Retention: artifacts older than N days go, except what approved images need.

The keep-set starts from the approved images and follows, transitively, what each needs to
be rendered again: its inputs (init, mask and control images) and its parent (the image a
re-render or a retry came from: ``JobSpec.parent``, ``<job>/<index>`` or ``<job>``), with
the parent's own inputs and parent. An image's lineage is read from its metadata (what
``engine.job_images.store_image`` writes), else from the ``proofroom`` chunk of the PNG
(images stored before the metadata carried it). Works on any :class:`ArtifactStore`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.metadata import read_proofroom
from engine.store.base import ArtifactNotFoundError, ArtifactStore, is_id

if TYPE_CHECKING:
    from engine.spec import JobSpec

INPUT_FIELDS = {"init": "init_image", "mask": "mask_image", "control": "control_image"}


@dataclass(frozen=True)
class Approved:
    """An approved image: its artifact id and, when there is one, its exported copy (the
    same bytes, read there instead of downloading them)."""

    artifact_id: str
    png: Path | None = None


@dataclass(frozen=True)
class Lineage:
    """What an image needs to be rendered again: its inputs by role, and its parent."""

    inputs: dict[str, str]
    parent: str | None


@dataclass
class PruneReport:
    """What :func:`prune` removed (or, in a dry run, would remove) and what it kept."""

    cutoff: date  # artifacts stored before this day were looked at
    dry_run: bool
    removed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # old artifacts kept -> why


def lineage_meta(spec: JobSpec, *, index: int, seed: int) -> dict[str, Any]:
    """The metadata an image of ``spec`` is stored with: its job (for
    ``list_job``) and the lineage that retention follows without reading the image."""
    return {
        "job_id": spec.id,
        "index": index,
        "seed": seed,
        "model": spec.model,
        "parent": spec.parent,
        "inputs": spec.input_images(),
    }


def keep_set(store: ArtifactStore, *, approved: Iterable[Approved]) -> dict[str, str]:
    """The ids to keep, each with why: the approved images, and what they need."""
    keep: dict[str, str] = {}
    todo: deque[tuple[str, str, Path | None]] = deque(
        (image.artifact_id, "approved", image.png) for image in approved
    )
    while todo:
        artifact_id, why, png = todo.popleft()
        if artifact_id in keep or not is_id(artifact_id):
            continue
        keep[artifact_id] = why
        found = lineage(store, artifact_id, png=png)
        if found is None:
            continue
        for role, input_id in sorted(found.inputs.items()):
            todo.append((input_id, f"{role} image of {artifact_id}", None))
        if found.parent:
            for parent_id in parent_images(store, found.parent):
                todo.append((parent_id, f"parent of {artifact_id}", None))
    return keep


def lineage(store: ArtifactStore, artifact_id: str, *, png: Path | None = None) -> Lineage | None:
    """The lineage of image ``artifact_id``: from ``png`` (an exported copy) when given,
    else its metadata, else its PNG in the store; None when it has none (not an image)."""
    if png is not None and png.is_file():
        found = _from_png(png.read_bytes())
        if found is not None:
            return found
    try:
        meta = store.meta(artifact_id) or {}
        if isinstance(meta.get("inputs"), dict):
            return Lineage(inputs=_ids(meta["inputs"]), parent=_text(meta.get("parent")))
        if not artifact_id.endswith(".png"):
            return None
        return _from_png(store.get(artifact_id))
    except ArtifactNotFoundError:
        return None


def parent_images(store: ArtifactStore, parent: str) -> list[str]:
    """The stored images ``parent`` names: image ``<index>`` of job ``<job>``, or every
    artifact of job ``<job>`` (a batch retry names the whole job)."""
    job_id, _, index = parent.partition("/")
    ids = store.list_job(job_id)
    if not index:
        return ids
    return [i for i in ids if str((_meta(store, i) or {}).get("index")) == index]


def prune(
    store: ArtifactStore,
    *,
    days: int,
    keep: Mapping[str, str],
    now: datetime,
    dry_run: bool = False,
) -> PruneReport:
    """Remove the artifacts stored more than ``days`` days before ``now`` (by the day in
    their id) that are not in ``keep``; with ``dry_run``, only say which."""
    if days < 1:
        raise ValueError(f"retention needs at least 1 day, not {days}")
    report = PruneReport(cutoff=(now - timedelta(days=days)).date(), dry_run=dry_run)
    for artifact_id in list(store.ids_before(report.cutoff)):
        if artifact_id in keep:
            report.kept[artifact_id] = keep[artifact_id]
            continue
        if not dry_run:
            store.delete(artifact_id)
        report.removed.append(artifact_id)
    return report


def _from_png(png: bytes) -> Lineage | None:
    try:
        lineage_json = read_proofroom(png)
    except (OSError, ValueError):  # not a PNG we can read: no lineage, not an error
        return None
    spec = (lineage_json or {}).get("spec")
    if not isinstance(spec, dict):
        return None
    inputs = {role: spec.get(name) for role, name in INPUT_FIELDS.items()}
    return Lineage(inputs=_ids(inputs), parent=_text(spec.get("parent")))


def _ids(values: Mapping[str, Any]) -> dict[str, str]:
    return {role: value for role, value in values.items() if is_id(value)}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _meta(store: ArtifactStore, artifact_id: str) -> dict[str, Any] | None:
    try:
        return store.meta(artifact_id)
    except ArtifactNotFoundError:
        return None
