"""QA inside real tiny renders: the scores and flags travel with each image (result, PNG
chunk, artifact metadata); a template's thresholds apply to its jobs; the ``rerender``
policy renders a flagged image exactly once more, from a new seed, and never loops."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.catalog import Catalog, Template
from engine.merging import BATCH_TOLERANCE
from engine.metadata import parse_parameters, read_parameters, read_proofroom
from engine.qa.assess import rerender_seed
from engine.settings import QaSettings


@pytest.fixture()
def cache_with(pipeline_cache: Any):
    """The session's warm cache with other QA settings for one test (put back after)."""
    original = pipeline_cache.settings.qa

    def use(**qa: Any) -> Any:
        pipeline_cache.settings.qa = QaSettings(**qa)
        return pipeline_cache

    yield use
    pipeline_cache.settings.qa = original


def render_counting(spec, *, cache, store, catalog) -> tuple[Any, list[int]]:
    """Render ``spec``; also how many times its cancel check ran (once per planned call,
    then once per denoising step of every call its images are in, re-renders included)."""
    from engine.render import render

    checks: list[int] = []
    result = render(
        spec,
        cache=cache,
        store=store,
        catalog=catalog,
        should_cancel=lambda: checks.append(1) is None and False,
    )
    return result, checks


def decoded(store: Any, artifact_id: str) -> np.ndarray:
    with Image.open(io.BytesIO(store.get(artifact_id))) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_the_tiny_models_images_pass_the_default_checks(tiny_job, run_job, artifact_store) -> None:
    result = run_job(tiny_job(count=3))
    for image in result.images:
        assert image.flags == [] and image.rerendered_from is None
        qa = read_proofroom(artifact_store.get(image.artifact_id))["qa"]
        assert qa["flags"] == []
        assert set(qa["scores"]) == {"sharpness", "brightness", "contrast", "phash"}
        assert artifact_store.meta(image.artifact_id)["qa"] == qa


def test_flags_are_stored_with_the_image_and_in_its_result(
    tiny_job, cache_with, artifact_store, catalog
) -> None:
    cache = cache_with(min_sharpness=1e9)  # policy flag: posted flagged, nothing re-rendered
    spec = tiny_job(count=2, steps=2)
    result, checks = render_counting(spec, cache=cache, store=artifact_store, catalog=catalog)
    assert len(checks) == 1 + spec.steps  # one call, no re-render
    for image in result.images:
        [flag] = image.flags
        assert flag["check"] == "sharpness" and flag["threshold"] == 1e9
        assert flag["reason"].startswith("soft focus: sharpness ")
        assert image.seed == spec.image_seed(image.index) and image.rerendered_from is None
        png = artifact_store.get(image.artifact_id)
        assert read_proofroom(png)["qa"]["flags"] == [flag]
        assert artifact_store.meta(image.artifact_id)["qa"]["flags"] == [flag]


def test_a_templates_thresholds_apply_to_its_jobs_only(
    tiny_job, run_job, artifact_store, catalog, pipeline_cache
) -> None:
    from engine.render import render

    strict = Template(name="strict", description="d", prompt="{x}", qa={"min_sharpness": 1e9})
    with_strict = Catalog(
        templates={**catalog.templates, "strict": strict},
        models=catalog.models,
        loras=catalog.loras,
    )
    templated = render(
        tiny_job(template="strict"), cache=pipeline_cache, store=artifact_store, catalog=with_strict
    )
    plain = render(tiny_job(), cache=pipeline_cache, store=artifact_store, catalog=with_strict)
    assert [f["check"] for f in templated.images[0].flags] == ["sharpness"]
    assert plain.images[0].flags == []


def test_the_rerender_policy_renders_each_flagged_image_once_more_and_never_loops(
    tiny_job, cache_with, artifact_store, catalog
) -> None:
    cache = cache_with(policy="rerender", min_sharpness=1e9)  # every render fails
    spec = tiny_job(count=2, steps=2)
    result, checks = render_counting(spec, cache=cache, store=artifact_store, catalog=catalog)
    # One call of both images, then exactly one re-render each (its steps), no third.
    assert len(checks) == 1 + spec.steps + spec.count * spec.steps
    for image in result.images:
        first_seed = spec.image_seed(image.index)
        assert image.seed == rerender_seed(spec.id, image.index, first_seed) != first_seed
        assert [f["check"] for f in image.flags] == ["sharpness"]  # posted flagged
        assert image.rerendered_from is not None
        assert image.rerendered_from["seed"] == first_seed
        assert [f["check"] for f in image.rerendered_from["flags"]] == ["sharpness"]
        png = artifact_store.get(image.artifact_id)
        assert parse_parameters(read_parameters(png) or "")["Seed"] == str(image.seed)
        stored = read_proofroom(png)
        assert stored["seed"] == image.seed
        assert stored["qa"]["rerendered_from"] == image.rerendered_from
    # The kept image is the render of its new seed.
    cache = cache_with()
    for image in result.images:
        alone, _ = render_counting(
            tiny_job(seed=image.seed, steps=2), cache=cache, store=artifact_store, catalog=catalog
        )
        apart = np.abs(
            decoded(artifact_store, image.artifact_id)
            - decoded(artifact_store, alone.images[0].artifact_id)
        )
        assert apart.max() <= BATCH_TOLERANCE


def test_images_that_pass_are_not_rendered_again_under_the_rerender_policy(
    tiny_job, cache_with, artifact_store, catalog
) -> None:
    cache = cache_with(policy="rerender")
    spec = tiny_job(count=2, steps=2)
    result, checks = render_counting(spec, cache=cache, store=artifact_store, catalog=catalog)
    assert len(checks) == 1 + spec.steps
    assert [image.seed for image in result.images] == [spec.seed, spec.seed + 1]
    assert all(image.flags == [] for image in result.images)
