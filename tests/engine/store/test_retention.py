"""Retention on both stores: old artifacts go, approved images stay with every input and
parent they need to be rendered again, new artifacts are not touched. Images are stored the
way the worker stores them (``engine.job_images.store_image``), inputs the way the bot does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from engine import metadata
from engine.job_images import store_image
from engine.settings import Limits
from engine.spec import JobSpec, Mode, reseeded
from engine.store import ArtifactStore
from engine.store.retention import Approved, keep_set, lineage, prune
from tests.engine.jobs_fixtures import tiny_spec
from tests.engine.store.conftest import START, Clock

NOW = START
OLD = NOW - timedelta(days=45)
DAYS = 30


def image(colour: str = "red") -> Image.Image:
    return Image.new("RGB", (8, 8), colour)


def put_input(store: ArtifactStore, role: str) -> str:
    """An attached image, stored as ``bot.jobs.inputs.store_inputs`` does."""
    png = metadata.png_with_parameters(image("blue"), "")
    meta = {"role": role, "filename": f"{role}.png", "requested_by": "U1"}
    return store.put(png, suffix=".png", meta=meta)


def render(store: ArtifactStore, spec: JobSpec) -> list[str]:
    """The job's images, stored as the worker stores them."""
    return [
        store_image(spec, i, image(), prompt=spec.prompt, store=store).artifact_id
        for i in range(spec.count)
    ]


def test_old_artifacts_go_and_approved_images_keep_what_they_need(
    store: ArtifactStore, clock: Clock
) -> None:
    clock.now = OLD
    parent_init = put_input(store, "init")
    parent_spec = tiny_spec(mode=Mode.img2img, init_image=parent_init, count=2)
    parent_images = render(store, parent_spec)
    # A re-render of the parent's second image (as ReviewDesk.rerender makes it): approved.
    child_spec = reseeded(parent_spec, limits=Limits(), parent=f"{parent_spec.id}/1", count=1)
    [child] = render(store, child_spec)
    # An inpaint job of its own: approved, with its init and mask.
    init, mask = put_input(store, "init"), put_input(store, "mask")
    [painted] = render(store, tiny_spec(mode=Mode.inpaint, init_image=init, mask_image=mask))
    # What nobody approved.
    unapproved = render(store, tiny_spec(count=2))
    stray_input = put_input(store, "control")
    manifest = store.put(b"row,file\n", suffix=".csv", meta={"batch": "b1", "kind": "manifest"})
    clock.now = NOW - timedelta(days=DAYS - 1)  # young enough: never looked at
    recent = render(store, tiny_spec())
    recent_input = put_input(store, "init")

    keep = keep_set(store, approved=[Approved(child), Approved(painted)])
    report = prune(store, days=DAYS, keep=keep, now=NOW)

    assert keep == {
        child: "approved",
        painted: "approved",
        parent_init: f"init image of {child}",
        parent_images[1]: f"parent of {child}",
        init: f"init image of {painted}",
        mask: f"mask image of {painted}",
    }
    assert sorted(report.removed) == sorted([parent_images[0], *unapproved, stray_input, manifest])
    assert report.kept == keep and str(report.cutoff) == "2026-10-21"
    for artifact_id in report.removed:
        assert not store.exists(artifact_id)
    for artifact_id in [*keep, *recent, recent_input]:
        assert store.exists(artifact_id)
    assert store.list_job(parent_spec.id) == [parent_images[1]]
    # What was kept is enough to render the approved image again.
    assert lineage(store, child) is not None
    assert all(store.exists(i) for i in child_spec.input_images().values())


def test_a_dry_run_removes_nothing(store: ArtifactStore, clock: Clock) -> None:
    clock.now = OLD
    old = render(store, tiny_spec())

    report = prune(store, days=DAYS, keep={}, now=NOW, dry_run=True)

    assert report.removed == old and report.dry_run
    assert store.exists(old[0])


def test_images_stored_before_the_lineage_metadata_are_read_from_their_png(
    store: ArtifactStore, clock: Clock, tmp_path: Path
) -> None:
    clock.now = OLD
    control = put_input(store, "control")
    spec = tiny_spec(
        mode=Mode.controlnet, control_image=control, control_type="canny", controlnet="cn"
    )
    lineage_chunk = {"spec": spec.model_dump(mode="json"), "index": 0, "seed": spec.seed}
    png = metadata.png_with_parameters(image(), "old", proofroom=lineage_chunk)
    legacy_meta = {"job_id": spec.id, "index": 0, "seed": spec.seed, "model": spec.model}
    legacy = store.put(png, suffix=".png", meta=legacy_meta)  # as older versions stored it

    keep = keep_set(store, approved=[Approved(legacy)])
    prune(store, days=DAYS, keep=keep, now=NOW)

    assert keep == {legacy: "approved", control: f"control image of {legacy}"}
    assert store.exists(control)


def test_an_approved_image_gone_from_the_store_keeps_its_inputs_by_its_exported_copy(
    store: ArtifactStore, clock: Clock, tmp_path: Path
) -> None:
    clock.now = OLD
    init = put_input(store, "init")
    [approved] = render(store, tiny_spec(mode=Mode.img2img, init_image=init))
    exported = tmp_path / "approved.png"
    exported.write_bytes(store.get(approved))
    store.delete(approved)

    keep = keep_set(store, approved=[Approved(approved, png=exported)])

    assert keep[init] == f"init image of {approved}"


def test_a_retry_of_a_whole_job_keeps_the_whole_job(store: ArtifactStore, clock: Clock) -> None:
    clock.now = OLD
    first = tiny_spec(count=2)
    first_images = render(store, first)
    [retried] = render(store, reseeded(first, limits=Limits(), parent=first.id, count=1))

    keep = keep_set(store, approved=[Approved(retried)])

    assert set(keep) == {retried, *first_images}


def test_retention_needs_a_day_at_least(store: ArtifactStore) -> None:
    with pytest.raises(ValueError):
        prune(store, days=0, keep={}, now=NOW)
