"""A1111 sampler names map to diffusers schedulers, and each one renders."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import SpecError
from engine.samplers import SAMPLER_SCHEDULERS, make_scheduler
from engine.spec import SAMPLERS


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_renders_with_tiny(
    sampler, tiny_job, run_job, pixels, pipeline_cache, catalog
):
    result = run_job(tiny_job(sampler=sampler, steps=3))
    image = pixels(result.images[0].artifact_id)
    assert image.shape == (64, 64, 3) and image.std() > 1
    scheduler = pipeline_cache.acquire(catalog.model("tiny"))[0].pipe.scheduler
    class_name, overrides = SAMPLER_SCHEDULERS[sampler]
    assert type(scheduler).__name__ == class_name
    for key, value in overrides.items():
        assert scheduler.config[key] == value


def test_karras_samplers_are_configured() -> None:
    from diffusers import PNDMScheduler

    base = PNDMScheduler(beta_schedule="scaled_linear").config
    sde = make_scheduler("DPM++ 2M SDE Karras", base)
    assert sde.config.use_karras_sigmas and sde.config.algorithm_type == "sde-dpmsolver++"
    assert not make_scheduler("DPM++ 2M Karras", base).config.algorithm_type.startswith("sde")


def test_unknown_sampler_lists_the_valid_names() -> None:
    with pytest.raises(SpecError) as caught:
        make_scheduler("Euler b", {})
    for name in SAMPLERS:
        assert name in caught.value.message


def test_a_sampler_never_inherits_the_previous_jobs_settings(tiny_job, run_job, pixels):
    fresh = pixels(run_job(tiny_job(sampler="Euler")).images[0].artifact_id)
    run_job(tiny_job(sampler="DPM++ 2M Karras"))  # sets use_karras_sigmas on its scheduler
    after = pixels(run_job(tiny_job(sampler="Euler")).images[0].artifact_id)
    assert np.array_equal(fresh, after)


def test_stochastic_samplers_are_deterministic_per_seed(tiny_job, run_job, pixels):
    for sampler in ("Euler a", "DPM++ 2M SDE Karras"):
        one, two = (run_job(tiny_job(sampler=sampler, count=2)) for _ in range(2))
        for a, b in zip(one.images, two.images, strict=True):
            assert np.array_equal(pixels(a.artifact_id), pixels(b.artifact_id))
