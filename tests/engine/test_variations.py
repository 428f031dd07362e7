"""Variations (``engine.derive.variation_spec``) rendered on ``tiny``: close to their
parent, the strong preset further away, and a fresh seed (what a variation is not)
unrelated. Also the specs of follow-ups: what they keep, and the upscale's limits."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.derive import VARY_STRENGTH, tile_overlap, upscale_spec, variation_spec
from engine.errors import SpecError
from engine.settings import Limits, Settings
from engine.spec import JobSpec, LoraRef, Mode


def _pixels(store: Any, artifact_id: str) -> np.ndarray:
    image = Image.open(io.BytesIO(store.get(artifact_id))).convert("RGB")
    return np.asarray(image, dtype=np.float64) / 255.0


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images' pixels: 1 the same picture, about 0 unrelated."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_a_variation_stays_near_its_parent_and_strong_moves_further(
    tiny_job: Callable[..., JobSpec],
    pipeline_cache: Any,
    artifact_store: Any,
    catalog: Any,
    engine_settings: Settings,
) -> None:
    from engine.render import render

    def rendered(spec: JobSpec) -> list[np.ndarray]:
        result = render(spec, cache=pipeline_cache, store=artifact_store, catalog=catalog)
        return [_pixels(artifact_store, image.artifact_id) for image in result.images]

    parent_spec = tiny_job(steps=8, count=2, seed=40)
    parent_result = render(parent_spec, cache=pipeline_cache, store=artifact_store, catalog=catalog)
    image = parent_result.images[1]
    parent = _pixels(artifact_store, image.artifact_id)
    limits = engine_settings.limits

    def varied(strength: str) -> list[np.ndarray]:
        spec = variation_spec(
            parent_spec,
            index=1,
            artifact_id=image.artifact_id,
            width=image.width,
            height=image.height,
            limits=limits,
            strength=strength,  # type: ignore[arg-type]
            count=3,
            seed=900,
        )
        return rendered(spec)

    subtle, strong = varied("subtle"), varied("strong")
    # What a variation is not: the same prompt from the same new seeds, without the parent.
    fresh = rendered(tiny_job(steps=8, count=3, seed=900))
    near = [similarity(v, parent) for v in subtle]
    far = [similarity(v, parent) for v in strong]
    unrelated = [similarity(f, parent) for f in fresh]
    assert min(near) > 0.8, near
    assert max(unrelated) < 0.5, unrelated
    assert min(near) > max(unrelated) + 0.4
    assert np.mean(far) < np.mean(near) - 0.05, (near, far)
    assert min(far) > max(unrelated), (far, unrelated)
    # New seeds, so the variations differ from one another.
    assert similarity(subtle[0], subtle[1]) < 0.999


def _parent(**fields: Any) -> JobSpec:
    from engine.spec import new_spec

    values: dict[str, Any] = {
        "prompt": "a leather handbag",
        "negative_prompt": "blurry",
        "model": "tiny",
        "loras": [LoraRef(name="tiny-style", weight=0.7)],
        "steps": 6,
        "cfg_scale": 5.0,
        "sampler": "Euler a",
        "width": 64,
        "height": 64,
        "count": 4,
        "seed": 100,
        "template": "product-photo",
        "variables": {"product": "handbag"},
        "priority": "bulk",
        "origin": {"batch": "b1", "label": "row 3", "channel": "C1"},
        **fields,
    }
    return new_spec(limits=Limits(), **values)


STORED = "19700101-0000000000000000.png"


def test_a_variation_keeps_the_job_and_changes_the_seed() -> None:
    parent = _parent()
    spec = variation_spec(
        parent, index=2, artifact_id=STORED, width=64, height=64, limits=Limits(), count=2
    )
    assert spec.mode is Mode.img2img
    assert spec.init_image == STORED
    assert spec.strength == VARY_STRENGTH["subtle"]
    assert spec.parent == f"{parent.id}/2"
    assert spec.id != parent.id
    assert spec.seed != parent.image_seed(2)
    kept = ("prompt", "negative_prompt", "model", "loras", "steps", "cfg_scale", "sampler")
    assert all(getattr(spec, name) == getattr(parent, name) for name in kept)
    assert (spec.template, spec.variables) == ("product-photo", {"product": "handbag"})
    assert spec.priority == "interactive"  # a follow-up is someone waiting in chat
    assert spec.origin == {"label": "row 3"}  # not part of the batch any more
    strong = variation_spec(
        parent, index=0, artifact_id=STORED, width=64, height=64, limits=Limits(), strength="strong"
    )
    assert strong.strength == VARY_STRENGTH["strong"] > spec.strength
    assert strong.count == 4


def test_an_upscale_is_scale_times_its_image_from_the_image_seed() -> None:
    parent = _parent()
    spec = upscale_spec(
        parent,
        index=3,
        artifact_id=STORED,
        width=64,
        height=48,
        scale=4,
        tile_size=64,
        limits=Limits(),
    )
    assert (spec.width, spec.height, spec.scale, spec.count) == (256, 192, 4, 1)
    assert spec.mode is Mode.upscale
    assert spec.seed == parent.image_seed(3)
    assert (spec.tile_size, spec.tile_overlap) == (64, 16)
    assert spec.strength == pytest.approx(0.3)
    assert spec.parent == f"{parent.id}/3"


def test_tiles_overlap_by_a_quarter_in_multiples_of_eight() -> None:
    assert [tile_overlap(t) for t in (64, 512, 1024, 96)] == [16, 128, 256, 24]


def test_an_upscale_has_its_own_output_limit() -> None:
    parent = _parent(width=1024, height=1024)
    big = upscale_spec(
        parent,
        index=0,
        artifact_id=STORED,
        width=1024,
        height=1024,
        scale=4,
        tile_size=512,
        limits=Limits(),
    )
    assert big.width == 4096  # beyond max_side and max_pixels of a job, within the upscale's
    with pytest.raises(SpecError, match=r"upscales here stop at 4,194,304.*--scale 2"):
        upscale_spec(
            parent,
            index=0,
            artifact_id=STORED,
            width=1024,
            height=1024,
            scale=4,
            tile_size=512,
            limits=Limits(max_upscale_pixels=2048 * 2048),
        )
    with pytest.raises(SpecError, match="2x or 4x"):
        upscale_spec(
            parent,
            index=0,
            artifact_id=STORED,
            width=64,
            height=64,
            scale=3,
            tile_size=64,
            limits=Limits(),
        )


def test_scale_and_tiles_belong_to_upscales_only() -> None:
    with pytest.raises(SpecError, match="upscales only"):
        _parent(scale=2)
