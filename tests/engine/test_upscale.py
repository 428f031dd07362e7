"""Upscale (``engine.upscale``): a tiled img2img pass over the Lanczos-enlarged source, on
the real tiny pipelines (native size 64 px), and once end to end through the real queue and
a ``python -m engine.worker`` subprocess."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine import metadata
from engine.derive import upscale_spec
from engine.errors import CancelledError, SpecError, UserError
from engine.settings import Settings
from engine.spec import JobSpec, Mode, new_spec
from engine.upscale import ramp, starts, tile_weights, tiles

TILE = 64  # the tiny model's native size: unet sample_size 32 x the VAE's factor 2


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene(side: int) -> Image.Image:
    """A smooth picture (sky, sun, grass) of ``side`` pixels."""
    k = side / 64
    image = Image.new("RGB", (side, side), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((12 * k, 12 * k, 52 * k, 52 * k), fill=(230, 200, 40))
    draw.rectangle((0, 48 * k, side, side), fill=(60, 140, 60))
    return image


def unrelated(side: int) -> Image.Image:
    """Another picture of the same size: other colours, other shapes."""
    k = side / 64
    image = Image.new("RGB", (side, side), (200, 60, 60))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8 * k, 8 * k, 30 * k, 56 * k), fill=(20, 20, 20))
    draw.polygon([(34 * k, 56 * k), (60 * k, 56 * k), (47 * k, 10 * k)], fill=(240, 240, 240))
    return image


def distance(a: Any, b: Any) -> float:
    """Mean absolute difference, in levels of 0..255."""
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


def similarity(a: Any, b: Any) -> float:
    """Pearson correlation of two images' pixels: 1 the same picture, about 0 unrelated."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def seam_ratio(image: np.ndarray, *, tile: int, overlap: int) -> float:
    """Mean gradient magnitude on the lines where tiles start and end (within 1 px) over
    the mean gradient everywhere else: about 1 without seams, well above with one."""
    values = image.astype(float).mean(axis=2)
    gy, gx = np.gradient(values)
    magnitude = np.hypot(gx, gy)
    height, width = values.shape
    on_line = np.zeros_like(magnitude, dtype=bool)
    for length, axis in ((width, 1), (height, 0)):
        lines: set[int] = set()
        for start in starts(length, tile=tile, overlap=overlap):
            lines.update(edge for edge in (start, start + tile) if 0 < edge < length)
        for line in lines:
            band = slice(max(line - 1, 0), min(line + 2, length))
            if axis == 1:
                on_line[:, band] = True
            else:
                on_line[band, :] = True
    return float(magnitude[on_line].mean() / magnitude[~on_line].mean())


@pytest.fixture()
def put(artifact_store: Any) -> Callable[[Image.Image], str]:
    return lambda image: artifact_store.put(png(image), suffix=".png")


@pytest.fixture()
def upscale_of(
    engine_settings: Settings, put: Callable[[Image.Image], str]
) -> Callable[..., JobSpec]:
    """The upscale spec of ``source`` as the chat side builds it (``engine.derive``)."""

    def build(source: Image.Image, *, scale: int, steps: int = 10, **parent: Any) -> JobSpec:
        values: dict[str, Any] = {
            "prompt": "a red cat on a wooden table",
            "model": "tiny",
            "sampler": "Euler a",
            "steps": steps,
            "width": 64,
            "height": 64,
            "seed": 1234,
            **parent,
        }
        parent_spec = new_spec(limits=engine_settings.limits, **values)
        return upscale_spec(
            parent_spec,
            index=0,
            artifact_id=put(source),
            width=source.width,
            height=source.height,
            scale=scale,
            tile_size=TILE,
            limits=engine_settings.limits,
        )

    return build


def test_tiles_cover_the_picture_full_size_with_the_last_flush() -> None:
    assert starts(128, tile=64, overlap=16) == [0, 48, 64]
    assert starts(64, tile=64, overlap=16) == [0]
    assert starts(256, tile=64, overlap=16) == [0, 48, 96, 144, 192]
    plan = tiles(192, 128, tile=64, overlap=16)
    assert [t.number for t in plan] == list(range(len(plan))) and len(plan) == 4 * 3
    covered = np.zeros((128, 192), int)
    for tile in plan:
        assert (tile.width, tile.height) == (64, 64)
        covered[tile.top : tile.top + 64, tile.left : tile.left + 64] += 1
    assert covered.min() >= 1


def test_feathered_weights_ramp_over_the_overlap_only_where_a_neighbour_is() -> None:
    weights = ramp(64, overlap=16, fade_in=True, fade_out=False)
    assert 0 < weights[0] < weights[8] < weights[15] < 1 and (weights[16:] == 1).all()
    corner = tiles(128, 128, tile=64, overlap=16)[0]
    both = tile_weights(corner, width=128, height=128, overlap=16)
    assert both[0, 0] == 1  # the picture's border: no neighbour, no fade
    assert both[-1, -1] < both[-1, 0] < 1 and both.min() > 0


def test_seam_metric_sees_a_seam() -> None:
    """The seam assertion below can fail: a picture stitched without blending fails it."""
    rng = np.random.default_rng(0)
    smooth = (rng.normal(120, 6, (128, 128, 3))).clip(0, 255)
    assert seam_ratio(smooth, tile=TILE, overlap=16) < 1.5
    stitched = smooth.copy()
    stitched[:, 64:] += 25  # a tile rendered a little brighter, pasted as it is
    stitched[64:, :] -= 20
    assert seam_ratio(stitched, tile=TILE, overlap=16) > 1.5


# 4x of a 32 px source: a 128 px result over 9 overlapping tiles, seams and all (a 128 px
# source made 512 px would be 121 tiles, minutes on 2 cores, for the same claim).
@pytest.mark.parametrize(("side", "scale", "steps"), [(64, 2, 10), (32, 4, 4)])
def test_an_upscale_is_larger_stays_close_to_its_source_and_shows_no_seam(
    side: int, scale: int, steps: int, upscale_of: Any, run_job: Any, pixels: Any
) -> None:
    source = scene(side)
    spec = upscale_of(source, scale=scale, steps=steps)
    progress: list[tuple[int, int]] = []

    result = run_job(spec, on_progress=lambda done, total: progress.append((done, total)))

    [image] = result.images
    assert (image.width, image.height) == (side * scale, side * scale)
    out = pixels(image.artifact_id)
    assert out.shape == (side * scale, side * scale, 3)
    back = Image.fromarray(out).resize((side, side), Image.Resampling.BOX)
    other = unrelated(side)
    # Detail is added (the random tiny UNet adds plenty), the picture stays its source's.
    assert distance(back, source) < 0.6 * distance(other, source), distance(back, source)
    assert distance(back, source) < 60
    assert similarity(back, source) > 0.35
    assert similarity(back, source) > similarity(back, other) + 0.3
    seams = seam_ratio(out, tile=TILE, overlap=spec.tile_overlap or 0)
    assert seams < 1.5
    count = len(tiles(spec.width, spec.height, tile=TILE, overlap=spec.tile_overlap or 0))
    total = count * int(spec.steps * (spec.strength or 0))
    assert progress[-1] == (total, total)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_an_upscale_renders_the_same_twice_and_writes_its_chain(
    upscale_of: Any, run_job: Any, pixels: Any, artifact_store: Any
) -> None:
    spec = upscale_of(scene(64), scale=2)
    first, again = run_job(spec).images[0], run_job(spec).images[0]
    assert np.array_equal(pixels(first.artifact_id), pixels(again.artifact_id))
    assert first.seed == spec.seed

    data = artifact_store.get(first.artifact_id)
    params = metadata.parse_parameters(metadata.read_parameters(data) or "")
    assert params["Size"] == "128x128" and params["Seed"] == str(spec.seed)
    assert params["Denoising strength"] == "0.3"
    assert params["SD upscale overlap"] == "16"
    assert params["SD upscale upscaler"] == "Lanczos"
    chunk = metadata.read_proofroom(data) or {}
    parent_job, _, parent_index = (spec.parent or "").partition("/")
    assert chunk["upscale"] == {
        "parent_job": parent_job,
        "parent_index": int(parent_index),
        "source": spec.init_image,
        "seed": spec.seed,
        "strength": 0.3,
        "scale": 2,
        "tile_size": 64,
        "tile_overlap": 16,
        "upscaler": "lanczos",
    }
    assert chunk["spec"]["mode"] == "upscale"  # the existing readers' view is unchanged


def test_another_seed_gives_other_detail(upscale_of: Any, run_job: Any, pixels: Any) -> None:
    one = run_job(upscale_of(scene(64), scale=2, seed=1)).images[0]
    two = run_job(upscale_of(scene(64), scale=2, seed=2)).images[0]
    assert not np.array_equal(pixels(one.artifact_id), pixels(two.artifact_id))


def test_cancel_stops_an_upscale_between_steps(
    upscale_of: Any, run_job: Any, artifact_store: Any
) -> None:
    spec = upscale_of(scene(64), scale=2)
    progress: list[int] = []
    stored_before = len(list(Path(artifact_store.root).rglob("*.png")))

    with pytest.raises(CancelledError):
        run_job(
            spec,
            on_progress=lambda done, total: progress.append(done),
            should_cancel=lambda: len(progress) >= 4,
        )

    assert 4 <= len(progress) <= 5 and max(progress) < 27  # 9 tiles x 3 steps: far from done
    assert len(list(Path(artifact_store.root).rglob("*.png"))) == stored_before


def test_the_source_is_checked_like_every_input_and_not_fitted(
    upscale_of: Any, run_job: Any, put: Any, engine_settings: Settings
) -> None:
    spec = upscale_of(scene(64), scale=2)
    tall = JobSpec(**{**spec.model_dump(), "init_image": put(scene(64).resize((64, 96)))})
    with pytest.raises(SpecError, match="the image to upscale is 64x96"):
        run_job(tall)
    huge = engine_settings.limits.max_input_pixels
    side = int(huge**0.5) + 8
    bomb = JobSpec(**{**spec.model_dump(), "init_image": put(Image.new("1", (side, side)))})
    with pytest.raises(UserError, match="the limit is"):
        run_job(bomb)


def test_the_upscale_runs_on_the_img2img_pipeline(pipeline_cache: Any, catalog: Any) -> None:
    loaded, _ = pipeline_cache.acquire(catalog.model("tiny"))
    assert loaded.pipeline(Mode.upscale) is loaded.pipeline(Mode.img2img)


@pytest.mark.slow
def test_an_upscale_end_to_end_through_the_queue_and_a_worker_process(
    redis_url: str, tmp_path: Path
) -> None:
    import redis as redis_lib

    from engine.queue import JobQueue
    from engine.store import store_from_settings
    from tests.engine.jobs_fixtures import (
        WorkerProcess,
        isolated_settings,
        new_prefix,
        tiny_spec,
        wait_terminal,
        wipe,
    )

    prefix = new_prefix()
    settings = isolated_settings(prefix=prefix, redis_url=redis_url, data_dir=tmp_path)
    client = redis_lib.Redis.from_url(redis_url)
    worker = WorkerProcess(settings, log_path=tmp_path / "worker.log")
    try:
        worker.wait_ready(client)
        store = store_from_settings(settings)
        source = store.put(png(scene(64)), suffix=".png")
        parent = tiny_spec(steps=10)
        spec = upscale_spec(
            parent,
            index=0,
            artifact_id=source,
            width=64,
            height=64,
            scale=2,
            tile_size=TILE,
            limits=settings.limits,
        )
        queue = JobQueue(redis=client, settings=settings)
        job_id = queue.enqueue(spec)

        end = wait_terminal(queue.events, job_id, timeout=120)

        assert end.kind == "done", (end.message, worker.log_tail())
        assert end.result is not None
        [image] = end.result.images
        assert (image.width, image.height, image.seed) == (128, 128, parent.image_seed(0))
        steps = [(e.step, e.total) for e in queue.events.history(job_id) if e.kind == "progress"]
        assert steps[-1] == (27, 27)  # 9 tiles x 3 denoising steps
        data = store.get(image.artifact_id)
        params = metadata.parse_parameters(metadata.read_parameters(data) or "")
        assert params["SD upscale upscaler"] == "Lanczos" and params["Size"] == "128x128"
        chain = (metadata.read_proofroom(data) or {})["upscale"]
        assert (chain["parent_job"], chain["parent_index"]) == (parent.id, 0)
    finally:
        worker.stop()
        wipe(client, prefix)


def test_an_upscale_is_charged_its_seconds_and_counted_as_one_image(
    upscale_of: Any, pipeline_cache: Any, artifact_store: Any, catalog: Any
) -> None:
    from engine.merging import CallCounters
    from engine.render import RenderRequest, render_group

    spec = upscale_of(scene(64), scale=2)
    counters, gpu_seconds = CallCounters(), dict[str, float]()

    [outcome] = render_group(
        [RenderRequest(spec)],
        cache=pipeline_cache,
        store=artifact_store,
        catalog=catalog,
        counters=counters,
        gpu_seconds=gpu_seconds,
    )

    assert not isinstance(outcome, Exception) and len(outcome.images) == 1
    assert (counters.calls, counters.images) == (1, 1)
    assert set(gpu_seconds) == {spec.id} and gpu_seconds[spec.id] > 0
    assert counters.busy_s >= gpu_seconds[spec.id]


def test_an_upscale_of_no_denoising_steps_is_the_enlarged_source_through_the_vae(
    upscale_of: Any, run_job: Any, pixels: Any
) -> None:
    spec = upscale_of(scene(64), scale=2, steps=3)  # 3 x 0.3: no step, as in img2img
    progress: list[tuple[int, int]] = []

    [image] = run_job(spec, on_progress=lambda *step: progress.append(step)).images

    enlarged = scene(64).resize((128, 128), Image.Resampling.LANCZOS)
    out = pixels(image.artifact_id)
    assert out.shape == (128, 128, 3)
    # The tiny VAE's own round trip is about 24 levels off on this picture.
    assert distance(out, enlarged) < 0.5 * distance(unrelated(128), enlarged)
    assert progress[-1] == (9, 9)  # one unit a tile
