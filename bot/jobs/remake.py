"""``proofroom generate --from <sidecar.json>``: render an exported image again.

An approved image's sidecar (``bot.review.export``) holds its job's whole spec and the
image's index. The image is rendered alone, from its own seed, with the inputs it was made
from (an upscale's or a variation's parent image) read from the team's artifact store; the
new PNG goes into ``-o`` and nothing is added to the store. Rendered on the machine and
precision it was made on, it is the same image (an upscale or any image of a one-image
job: bit for bit on a CPU; an image of a larger batch within the batch tolerance of
``engine.merging``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from engine.errors import SpecError, UserError
from engine.model_folders import load_catalog
from engine.settings import Settings
from engine.spec import JobSpec, check_limits
from engine.store import ArtifactNotFoundError, ArtifactStore, store_from_settings


def spec_of(sidecar: dict[str, Any]) -> JobSpec:
    """The one-image spec that renders the sidecar's image again; :class:`UserError` with
    a sentence when the sidecar is not one of ours or is from before specs were kept."""
    if not isinstance(sidecar.get("spec"), dict):
        raise UserError(
            "this sidecar has no `spec` (it was exported before sidecars kept the whole job); "
            "render it again from its prompt and seed with --prompt and --seed"
        )
    try:
        spec = JobSpec.model_validate(sidecar["spec"])
        index = int(sidecar.get("index", 0))
    except (ValueError, TypeError) as exc:
        raise UserError(f"this sidecar's spec cannot be read: {exc}") from None
    if not 0 <= index < spec.count:
        raise UserError(f"this sidecar names image {index} of a job of {spec.count} image(s)")
    return spec.model_copy(
        update={"seed": spec.image_seed(index), "count": 1, "origin": {"platform": "cli"}}
    )


def run(path: Path, *, output: Path, settings: Settings) -> int:
    """Render the image of the sidecar at ``path`` into ``output``; 0, or 2 with a sentence
    on stderr."""
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    try:
        spec = spec_of(sidecar if isinstance(sidecar, dict) else {})
        catalog = load_catalog(settings)
        try:
            check_limits(spec, settings.limits)
        except SpecError as exc:  # the limits here may be lower than where it was made
            raise UserError(f"this machine's limits refuse it: {exc.message}") from None
        team = store_from_settings(settings)
        for role, artifact in spec.input_images().items():
            if not team.exists(artifact):
                raise UserError(
                    f"its {role} image `{artifact}` is no longer in the artifact store "
                    "(pruned?), so it cannot be made again"
                )
        return _render(spec, team=team, catalog=catalog, settings=settings, output=output)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


def _render(
    spec: JobSpec, *, team: ArtifactStore, catalog: Any, settings: Settings, output: Path
) -> int:
    import tempfile

    from engine.pipelines import PipelineCache  # torch: only once the sidecar is good
    from engine.render import render
    from engine.store import LocalStore

    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        store = ReadThrough(reads=team, writes=LocalStore(scratch))
        result = render(spec, cache=PipelineCache(settings=settings), store=store, catalog=catalog)
        [image] = result.images
        target = output / f"{spec.parent or 'image'}-{image.seed}.png".replace("/", "-")
        target.write_bytes(store.get(image.artifact_id))
    print(f"{target}  seed {image.seed}  {image.width}x{image.height}")
    return 0


class ReadThrough:
    """An artifact store that reads the team's artifacts and writes into a scratch store,
    so that making an image again adds nothing to the team's store."""

    def __init__(self, *, reads: ArtifactStore, writes: ArtifactStore) -> None:
        self.reads = reads
        self.writes = writes

    def _holder(self, artifact_id: str) -> ArtifactStore:
        return self.writes if self.writes.exists(artifact_id) else self.reads

    def put(self, data: bytes, *, suffix: str, meta: dict[str, Any] | None = None) -> str:
        """Stored in the scratch store."""
        return self.writes.put(data, suffix=suffix, meta=meta)

    def get(self, artifact_id: str) -> bytes:
        """From the scratch store, else the team's."""
        return self._holder(artifact_id).get(artifact_id)

    def path(self, artifact_id: str) -> Path:
        """A local path of the artifact, wherever it is."""
        return self._holder(artifact_id).path(artifact_id)

    def exists(self, artifact_id: str) -> bool:
        """In either store."""
        return self.writes.exists(artifact_id) or self.reads.exists(artifact_id)

    def meta(self, artifact_id: str) -> dict[str, Any] | None:
        """The metadata of the artifact, wherever it is."""
        return self._holder(artifact_id).meta(artifact_id)

    def list_job(self, job_id: str) -> list[str]:
        """Only what was made here."""
        return self.writes.list_job(job_id)

    def url(self, artifact_id: str, *, expires_s: int | None = None) -> str | None:
        """No URL: nothing made here is served."""
        return None

    def delete(self, artifact_id: str) -> None:
        """Only the scratch store's artifacts can be deleted."""
        if not self.writes.exists(artifact_id):
            raise ArtifactNotFoundError(artifact_id)
        self.writes.delete(artifact_id)

    def ids_before(self, day: date) -> Iterator[str]:
        """Only what was made here."""
        return self.writes.ids_before(day)
