"""Rendering with the real tiny pipelines: determinism, seeds, prompts, LoRAs, progress,
cancellation, validation and metadata."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import metadata
from engine.catalog import Catalog
from engine.errors import CancelledError, CatalogError, SpecError
from engine.merging import BATCH_TOLERANCE, CallCounters
from engine.spec import JobSpec, LoraRef, Mode

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_same_spec_renders_identical_pixels(tiny_job, run_job, pixels) -> None:
    spec = tiny_job()
    first, second = run_job(spec), run_job(spec)
    assert first.images[0].artifact_id != second.images[0].artifact_id
    assert np.array_equal(pixels(first.images[0].artifact_id), pixels(second.images[0].artifact_id))
    assert pixels(first.images[0].artifact_id).shape == (64, 64, 3)


def test_image_k_of_a_batch_matches_a_single_render_with_seed_plus_k(
    tiny_job, run_job, pixels
) -> None:
    counters = CallCounters()
    batch = run_job(tiny_job(count=4, seed=500), counters=counters)
    assert (counters.calls, counters.images) == (1, 4)  # the four images in one call
    assert [image.seed for image in batch.images] == [500, 501, 502, 503]
    seen = []
    for image in batch.images:
        alone = run_job(tiny_job(seed=image.seed)).images[0]
        apart = np.abs(pixels(image.artifact_id).astype(int) - pixels(alone.artifact_id))
        assert apart.max() <= BATCH_TOLERANCE  # the same picture, up to float rounding
        seen.append(pixels(image.artifact_id).tobytes())
    assert len(set(seen)) == 4


def test_a_model_renders_at_most_max_batch_images_per_call(
    tiny_job, pipeline_cache, catalog, artifact_store
) -> None:
    from engine.render import render

    models = {**catalog.models, "tiny": catalog.model("tiny").model_copy(update={"max_batch": 2})}
    pairs = Catalog(templates=catalog.templates, models=models, loras=catalog.loras)
    counters = CallCounters()
    result = render(
        tiny_job(count=5),
        cache=pipeline_cache,
        store=artifact_store,
        catalog=pairs,
        counters=counters,
    )
    assert [image.index for image in result.images] == [0, 1, 2, 3, 4]
    assert (counters.calls, counters.images) == (3, 5)  # 2 + 2 + 1


def test_seed_wraps_at_the_32_bit_limit(tiny_job, run_job) -> None:
    result = run_job(tiny_job(seed=2**32 - 1, count=2))
    assert [image.seed for image in result.images] == [2**32 - 1, 0]


@pytest.mark.slow
def test_same_pixels_in_another_process(tiny_job, run_job, pixels, engine_settings) -> None:
    spec = tiny_job(prompt="professional product photography of a (leather:1.2) handbag")
    here = hashlib.sha256(pixels(run_job(spec).images[0].artifact_id).tobytes()).hexdigest()
    script = """
import hashlib, io, sys, tempfile
import numpy as np
from PIL import Image
from engine.catalog import Catalog
from engine.pipelines import PipelineCache
from engine.render import render
from engine.settings import Settings
from engine.spec import JobSpec
from engine.store import LocalStore
settings = Settings(model_cache_dir=sys.argv[2], device="cpu")
store = LocalStore(tempfile.mkdtemp())
result = render(JobSpec.model_validate_json(sys.argv[1]), cache=PipelineCache(settings=settings),
                store=store, catalog=Catalog.load(settings.templates_dir))
image = Image.open(io.BytesIO(store.get(result.images[0].artifact_id))).convert("RGB")
print(hashlib.sha256(np.asarray(image).tobytes()).hexdigest())
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            spec.model_dump_json(),
            str(engine_settings.model_cache_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env=env,
    )
    assert out.stdout.strip().splitlines()[-1] == here


def test_tiny_xl_renders_through_the_sdxl_pipeline(
    tiny_job, run_job, pixels, pipeline_cache, catalog
):
    from diffusers import StableDiffusionXLPipeline

    result = run_job(tiny_job(model="tiny-xl", negative_prompt="blurry"))
    loaded, load_s = pipeline_cache.acquire(catalog.model("tiny-xl"))
    assert isinstance(loaded.pipe, StableDiffusionXLPipeline)
    assert load_s == 0.0
    assert result.model == "tiny-xl"
    image = pixels(result.images[0].artifact_id)
    assert image.shape == (64, 64, 3) and image.std() > 1


def test_long_prompt_is_not_truncated(tiny_job, run_job, pixels, pipeline_cache, catalog) -> None:
    from engine.prompts import token_count

    words = [w for w in _words()][:150]
    long_prompt, short_prompt = " ".join(words), " ".join(words[:70])
    tokenizer = pipeline_cache.acquire(catalog.model("tiny"))[0].pipe.tokenizer
    assert token_count(tokenizer, long_prompt) == 150
    long_image = pixels(run_job(tiny_job(prompt=long_prompt)).images[0].artifact_id)
    short_image = pixels(run_job(tiny_job(prompt=short_prompt)).images[0].artifact_id)
    assert not np.array_equal(long_image, short_image)


def test_attention_weight_changes_the_image(tiny_job, run_job, pixels) -> None:
    plain = pixels(run_job(tiny_job(prompt="a red cat")).images[0].artifact_id)
    weighted = pixels(run_job(tiny_job(prompt="a (red:1.5) cat")).images[0].artifact_id)
    assert not np.array_equal(plain, weighted)


def test_loras_change_the_image_and_switch_off_cleanly(tiny_job, run_job, pixels) -> None:
    prompt = "tinystyle tinybrand, a red cat"  # triggers present: only the LoRA differs

    def render(*loras: tuple[str, float]) -> np.ndarray:
        refs = [LoraRef(name=n, weight=w) for n, w in loras]
        return pixels(run_job(tiny_job(prompt=prompt, loras=refs)).images[0].artifact_id)

    base = render()
    style = render(("tiny-style", 1.0))
    assert np.abs(style.astype(int) - base).mean() > 3  # visibly different
    assert np.array_equal(render(), base)  # disabled again after the LoRA job
    assert not np.array_equal(render(("tiny-style", 0.5)), style)
    both = render(("tiny-style", 1.0), ("tiny-brand", 1.0))
    assert not np.array_equal(both, style)
    assert np.array_equal(render(("tiny-style", 1.0)), style)  # back to one adapter


def test_lora_trigger_words_are_added_once(tiny_job, run_job, artifact_store) -> None:
    result = run_job(tiny_job(prompt="a red cat", loras=[LoraRef(name="tiny-style", weight=0.8)]))
    text = metadata.read_parameters(artifact_store.get(result.images[0].artifact_id))
    params = metadata.parse_parameters(text)
    assert params["Prompt"] == "tinystyle, a red cat"
    assert params["Lora"] == "tiny-style:0.8"
    again = run_job(tiny_job(prompt="a TinyStyle cat", loras=[LoraRef(name="tiny-style")]))
    text = metadata.read_parameters(artifact_store.get(again.images[0].artifact_id))
    assert metadata.parse_parameters(text)["Prompt"] == "a TinyStyle cat"


def test_xl_lora_on_xl_model(tiny_job, run_job, pixels) -> None:
    base = pixels(run_job(tiny_job(model="tiny-xl", prompt="tinyxl cat")).images[0].artifact_id)
    styled = run_job(
        tiny_job(model="tiny-xl", prompt="tinyxl cat", loras=[LoraRef(name="tiny-xl-style")])
    )
    assert not np.array_equal(pixels(styled.images[0].artifact_id), base)


def test_lora_of_another_family_is_refused(tiny_job, run_job) -> None:
    with pytest.raises(SpecError, match="sd15"):
        run_job(tiny_job(model="tiny-xl", loras=[LoraRef(name="tiny-style")]))
    with pytest.raises(SpecError, match="once"):
        run_job(tiny_job(loras=[LoraRef(name="tiny-style"), LoraRef(name="tiny-style")]))


def test_spec_is_validated_again_on_the_worker(tiny_job, run_job) -> None:
    good = tiny_job()
    with pytest.raises(SpecError, match="steps"):
        run_job(JobSpec(**{**good.model_dump(), "steps": 999}))
    with pytest.raises(SpecError, match="multiple of 8"):
        run_job(JobSpec(**{**good.model_dump(), "width": 70}))
    with pytest.raises(SpecError, match="sampler"):
        run_job(JobSpec(**{**good.model_dump(), "sampler": "Euler b"}))
    with pytest.raises(CatalogError, match="model"):
        run_job(JobSpec(**{**good.model_dump(), "model": "nosuch"}))
    with pytest.raises(CatalogError, match="LoRA"):
        run_job(JobSpec(**{**good.model_dump(), "loras": [{"name": "nosuch"}]}))
    with pytest.raises(SpecError, match="img2img needs an init image"):
        run_job(JobSpec(**{**good.model_dump(), "mode": Mode.img2img}))


@pytest.mark.parametrize("sampler", ["Euler a", "Heun"])  # Heun runs more model steps
def test_progress_counts_every_step_of_every_image(sampler, tiny_job, run_job) -> None:
    calls: list[tuple[int, int]] = []
    run_job(
        tiny_job(count=2, steps=3, sampler=sampler), on_progress=lambda d, t: calls.append((d, t))
    )
    done = [d for d, _ in calls]
    assert {t for _, t in calls} == {6}
    assert done == sorted(done) and done[-1] == 6
    assert done[0] == 2  # both images in one call: each step is a step of two images


def test_cancel_stops_at_the_next_step(tiny_job, run_job, artifact_store) -> None:
    calls: list[int] = []
    with pytest.raises(CancelledError):
        run_job(
            tiny_job(count=3, steps=4),
            on_progress=lambda d, t: calls.append(d),
            should_cancel=lambda: len(calls) >= 2,
        )
    assert calls == [3, 6]  # the three images' first two steps, in one call
    with pytest.raises(CancelledError):
        run_job(tiny_job(), should_cancel=lambda: True)


def test_result_and_png_metadata(tiny_job, run_job, artifact_store, pipeline_cache) -> None:
    spec = tiny_job(
        prompt="professional product photography of leather handbag, studio lighting",
        negative_prompt="blurry, watermark",
        count=2,
        template="product-photo",
        variables={"product": "leather handbag"},
        parent="abc123/0",
    )
    result = run_job(spec)
    assert result.job_id == spec.id and result.device == "cpu"
    assert result.render_s > 0 and result.total_s >= result.render_s
    assert result.load_s == 0.0  # the session cache had tiny loaded already
    png = artifact_store.get(result.images[1].artifact_id)
    params = metadata.parse_parameters(metadata.read_parameters(png))
    assert params["Prompt"] == spec.prompt
    assert params["Negative prompt"] == "blurry, watermark"
    assert (params["Seed"], params["Steps"], params["Sampler"]) == (
        str(spec.seed + 1),
        "3",
        "Euler a",
    )
    assert (params["Size"], params["Model"], params["CFG scale"]) == ("64x64", "tiny", "7")
    lineage = metadata.read_proofroom(png)
    assert lineage["index"] == 1 and lineage["seed"] == spec.seed + 1
    assert JobSpec.model_validate(lineage["spec"]) == spec
    assert artifact_store.meta(result.images[1].artifact_id)["job_id"] == spec.id
    assert json.loads(result.model_dump_json())["images"][1]["seed"] == spec.seed + 1


def test_load_time_is_reported_only_by_the_job_that_paid_it(
    tiny_job, engine_settings, catalog, artifact_store
):
    from engine.pipelines import PipelineCache
    from engine.render import render

    cache = PipelineCache(settings=engine_settings)
    first = render(tiny_job(), cache=cache, store=artifact_store, catalog=catalog)
    second = render(tiny_job(), cache=cache, store=artifact_store, catalog=catalog)
    assert first.load_s > 0 and second.load_s == 0.0
    assert cache.loads["tiny"] == 1 and cache.load_seconds == pytest.approx(first.load_s, abs=0.01)


def _words() -> list[str]:
    from engine.tiny import WORDS_FILE

    lines = WORDS_FILE.read_text().splitlines()
    return [w for w in lines if w and not w.startswith("#")]
