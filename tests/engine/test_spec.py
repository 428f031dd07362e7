"""JobSpec limits: every out-of-range value is a sentence a user can act on."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from engine.errors import SpecError
from engine.settings import Limits
from engine.spec import MAX_SEED, SAMPLERS, JobSpec, LoraRef, new_spec

LIMITS = Limits()
BASE = {"prompt": "a red mug", "model": "tiny", "width": 64, "height": 64, "steps": 4}


def test_new_spec_draws_and_records_a_concrete_seed() -> None:
    spec = new_spec(limits=LIMITS, **BASE)
    assert 0 <= spec.seed <= MAX_SEED
    again = JobSpec.model_validate_json(spec.model_dump_json())
    assert again == spec


def test_explicit_seed_is_kept_and_image_seeds_follow() -> None:
    spec = new_spec(limits=LIMITS, seed=41, count=3, **BASE)
    assert [spec.image_seed(k) for k in range(3)] == [41, 42, 43]
    assert new_spec(limits=LIMITS, seed=MAX_SEED, **BASE).image_seed(1) == 0


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("steps", 500, "steps must be between 1 and 60; you asked for 500"),
        ("steps", 0, "steps must be between 1 and 60; you asked for 0"),
        ("cfg_scale", 45.0, "cfg must be between 1 and 30; you asked for 45"),
        ("count", 20, "count must be between 1 and 8; you asked for 20"),
        ("width", 100, "width must be a multiple of 8; you asked for 100 (try 96 or 104)"),
        ("height", 4096, "height must be between 64 and 2048; you asked for 4096"),
        ("width", 32, "width must be between 64 and 2048; you asked for 32"),
        ("sampler", "Euler b", "unknown sampler `Euler b`; choose one of: Euler a, Euler,"),
        ("prompt", "   ", "the prompt is empty"),
        ("prompt", "x" * 2001, "the prompt is 2001 characters; the limit is 2000"),
    ],
)
def test_out_of_range_values_fail_with_a_sentence(field: str, value: object, expected: str) -> None:
    fields = {**BASE, field: value}
    with pytest.raises(SpecError) as info:
        new_spec(limits=LIMITS, seed=1, **fields)
    assert expected in info.value.message


def test_pixel_budget_is_checked_beyond_each_side() -> None:
    with pytest.raises(SpecError, match="pixels; the limit is"):
        new_spec(limits=LIMITS, seed=1, **{**BASE, "width": 2048, "height": 2048})


def test_limits_come_from_settings() -> None:
    strict = Limits(max_steps=10)
    with pytest.raises(SpecError, match="between 1 and 10"):
        new_spec(limits=strict, seed=1, **{**BASE, "steps": 11})


def test_all_a1111_sampler_names_are_listed() -> None:
    assert set(SAMPLERS) >= {"Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "UniPC", "Heun"}


def test_new_spec_refuses_a_lora_listed_twice() -> None:
    loras = [LoraRef(name="tiny-lora-a", weight=0.5), LoraRef(name="tiny-lora-a", weight=1.0)]
    with pytest.raises(SpecError) as info:
        new_spec(limits=LIMITS, seed=1, loras=loras, **BASE)
    assert info.value.message == "each LoRA may be listed once; give one weight per LoRA"


@pytest.mark.parametrize("job_id", ["a:b", "a b", "a/b", "a.b", ""])
def test_a_job_id_outside_letters_digits_underscore_and_dash_is_refused(job_id: str) -> None:
    # The id is part of RQ job ids and Redis keys.
    with pytest.raises(ValidationError, match="id"):
        new_spec(limits=LIMITS, seed=1, id=job_id, **BASE)
    assert new_spec(limits=LIMITS, seed=1, id="Job_1-a", **BASE).id == "Job_1-a"


def test_spec_and_catalog_do_not_import_torch() -> None:
    code = (
        "import sys, engine.spec, engine.catalog, engine.settings, engine.errors;"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
