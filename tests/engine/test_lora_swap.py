"""LoRA hot-swap on the real tiny pipeline: each file read from disk once, sets switched
per job with their weights, no LoRA meaning the base model exactly, derived pipelines
seeing the same adapters, the least recently used adapter deleted beyond the cap, and the
pipeline cache kept within its byte budget as adapters load."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.catalog import Catalog
from engine.pipelines import PipelineCache
from engine.render import render
from engine.settings import Settings
from engine.spec import LoraRef

# Both trigger words in the prompt, so every job encodes the same text: only LoRAs differ.
PROMPT = "tinystyle tinybrand, a red cat"
A, B = [LoraRef(name="tiny-style", weight=0.8)], [LoraRef(name="tiny-brand", weight=1.0)]


@pytest.fixture()
def fresh(engine_settings: Settings, catalog: Catalog, artifact_store: Any):
    """Render on a cache of this test alone (its own read counters); returns pixels."""

    def make(**settings_changes: Any):
        settings = engine_settings.model_copy(update=settings_changes)
        cache = PipelineCache(settings=settings)

        def run(spec) -> np.ndarray:
            result = render(spec, cache=cache, store=artifact_store, catalog=catalog)
            data = artifact_store.get(result.images[0].artifact_id)
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

        return cache, run

    return make


def test_two_loras_alternated_over_ten_jobs_read_each_file_once(fresh, tiny_job, catalog) -> None:
    _, run_clean = fresh()
    base = run_clean(tiny_job(prompt=PROMPT))  # a cache that never saw a LoRA

    cache, run = fresh()
    outputs: dict[str, list[np.ndarray]] = {"A": [], "B": []}
    for job in range(10):
        name, loras = ("A", A) if job % 2 == 0 else ("B", B)
        outputs[name].append(run(tiny_job(prompt=PROMPT, loras=loras)))
    paths = {str(cache.lora_path(catalog.lora(n))) for n in ("tiny-style", "tiny-brand")}
    assert dict(cache.lora_reads) == dict.fromkeys(paths, 1)
    assert cache.loads == {"tiny": 1}
    for images in outputs.values():
        assert len(images) == 5 and all(np.array_equal(i, images[0]) for i in images)
    assert not np.array_equal(outputs["A"][0], outputs["B"][0])
    assert not np.array_equal(outputs["A"][0], base)
    # A job without LoRAs after all of that is the base model, pixel for pixel.
    assert np.array_equal(run(tiny_job(prompt=PROMPT)), base)
    # Both LoRAs at once, with their weights, then A alone again: still A's image.
    both = run(tiny_job(prompt=PROMPT, loras=A + B))
    assert not any(np.array_equal(both, outputs[n][0]) for n in "AB")
    assert np.array_equal(run(tiny_job(prompt=PROMPT, loras=A)), outputs["A"][0])
    assert sum(cache.lora_reads.values()) == 2


def test_derived_pipelines_use_the_adapters_loaded_once(fresh, tiny_job, artifact_store) -> None:
    cache, run = fresh()
    init = artifact_store.put(png(Image.new("RGB", (64, 64), (90, 120, 200))), suffix=".png")
    run(tiny_job(prompt=PROMPT, loras=A))  # loads A in the base pipeline's modules
    with_a = run(tiny_job(prompt=PROMPT, loras=A, mode="img2img", init_image=init))
    without = run(tiny_job(prompt=PROMPT, mode="img2img", init_image=init))
    assert not np.array_equal(with_a, without)
    assert sum(cache.lora_reads.values()) == 1  # not loaded again for the img2img pipeline
    assert np.array_equal(
        run(tiny_job(prompt=PROMPT, loras=A, mode="img2img", init_image=init)), with_a
    )


def test_beyond_the_cap_the_least_recently_used_adapter_is_deleted(
    fresh, tiny_job, catalog
) -> None:
    _, run_uncapped = fresh()
    expected = {
        "A": run_uncapped(tiny_job(prompt=PROMPT, loras=A)),
        "B": run_uncapped(tiny_job(prompt=PROMPT, loras=B)),
    }

    cache, run = fresh(lora_adapter_cap=1)
    loaded, _ = cache.acquire(catalog.model("tiny"))
    for name, loras in (("A", A), ("B", B), ("A", A)):
        assert np.array_equal(run(tiny_job(prompt=PROMPT, loras=loras)), expected[name])
        assert list(loaded.adapters) == [loras[0].name]
    assert sum(cache.lora_reads.values()) == 3  # evicted, so read again: the cap's price
    # A job that needs more than the cap still gets all of its LoRAs.
    assert not np.array_equal(run(tiny_job(prompt=PROMPT, loras=A + B)), expected["A"])
    assert len(loaded.adapters) == 2


def test_adapters_count_in_the_memory_budget(fresh, tiny_job) -> None:
    cache, run = fresh()
    run(tiny_job(prompt=PROMPT))
    before = cache.total_bytes
    run(tiny_job(prompt=PROMPT, loras=A))
    assert cache.total_bytes > before


def test_loading_loras_keeps_the_cache_within_its_budget(
    engine_settings: Settings, catalog: Catalog, tiny_job, artifact_store: Any
) -> None:
    cache = PipelineCache(settings=engine_settings)
    cache.acquire(catalog.model("tiny"))
    cache.acquire(catalog.model("tiny-xl"))
    cache.budget_bytes = cache.total_bytes  # both models fit, with not a byte to spare
    render(tiny_job(prompt=PROMPT, loras=A), cache=cache, store=artifact_store, catalog=catalog)
    # The adapter grew tiny past the budget: tiny-xl, least recently used, made room.
    assert cache.loaded_models() == ["tiny"]
    assert cache.total_bytes <= cache.budget_bytes
    assert cache.loads == {"tiny": 1, "tiny-xl": 1}


def test_loading_loras_never_evicts_what_the_job_holds(
    engine_settings: Settings, catalog: Catalog
) -> None:
    cache = PipelineCache(settings=engine_settings)
    tiny = catalog.model("tiny")
    loaded, _ = cache.acquire(tiny)
    control, _ = cache.acquire_controlnet(catalog.controlnet("tiny-canny"), model=tiny)
    cache.acquire(catalog.model("tiny-xl"))
    cache.budget_bytes = cache.total_bytes
    style = catalog.lora("tiny-style")
    with loaded.lock:  # tiny and its ControlNet are now the least recently used entries
        cache.use_loras(
            loaded=loaded, loras=[(style.name, cache.lora_path(style), 0.8)], controlnet=control
        )
    assert cache.loaded_models() == ["tiny"]
    assert cache.total_bytes == loaded.nbytes + control.nbytes <= cache.budget_bytes
    # Under a budget smaller than the job's own pipeline the job still keeps it; the
    # ControlNet, which this job does not use, leaves.
    cache.budget_bytes = 1
    brand = catalog.lora("tiny-brand")
    with loaded.lock:
        cache.use_loras(loaded=loaded, loras=[(brand.name, cache.lora_path(brand), 1.0)])
    assert cache.loaded_models() == ["tiny"] and cache.total_bytes == loaded.nbytes
    assert list(loaded.adapters) == ["tiny-style", "tiny-brand"]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_switch_leaves_the_state_diffusers_set_adapters_leaves(fresh, tiny_job, catalog) -> None:
    cache, run = fresh()
    run(tiny_job(prompt=PROMPT, loras=A + B))  # both resident
    weighted = [LoraRef(name="tiny-brand", weight=0.3), LoraRef(name="tiny-style", weight=0.6)]
    switched = run(tiny_job(prompt=PROMPT, loras=weighted))

    # The same set through diffusers' own API; the next job asks for what is active, so
    # the worker leaves that state as it is and renders with it.
    pipe = cache.acquire(catalog.model("tiny"))[0].pipe
    pipe.disable_lora()
    pipe.enable_lora()
    pipe.set_adapters(["tiny-brand", "tiny-style"], adapter_weights=[0.3, 0.6])
    assert np.array_equal(run(tiny_job(prompt=PROMPT, loras=weighted)), switched)
    assert not np.array_equal(run(tiny_job(prompt=PROMPT, loras=A + B)), switched)
