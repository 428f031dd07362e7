"""The warm pipeline cache: one load per model, LRU within the budget, model sources,
LoRA files."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import LoraEntry, ModelEntry
from engine.errors import CatalogError, ModelUnavailableError
from engine.pipelines import PipelineCache, pipeline_bytes, resolve_device
from engine.settings import Settings

TINY = ModelEntry(name="tiny", source="builtin:tiny", family="sd15")
TINY_XL = ModelEntry(name="tiny-xl", source="builtin:tiny-xl", family="sdxl")


def test_each_model_is_loaded_once(engine_settings: Settings) -> None:
    cache = PipelineCache(settings=engine_settings)
    first, load_s = cache.acquire(TINY)
    again, warm_s = cache.acquire(TINY)
    assert again is first and load_s > 0 and warm_s == 0.0
    assert cache.loads == {"tiny": 1}
    assert cache.load_seconds == pytest.approx(load_s)
    assert first.nbytes == pipeline_bytes(first.pipe) > 0
    assert cache.device == "cpu" and first.pipe.device.type == "cpu"


def test_least_recently_used_model_leaves_when_over_budget(engine_settings: Settings) -> None:
    probe = PipelineCache(settings=engine_settings)
    budget = probe.acquire(TINY)[0].nbytes + probe.acquire(TINY_XL)[0].nbytes
    cache = PipelineCache(settings=engine_settings, budget_bytes=budget)
    cache.acquire(TINY)
    cache.acquire(TINY_XL)
    assert cache.loaded_models() == ["tiny", "tiny-xl"]
    cache.acquire(TINY)  # tiny is now the most recently used
    other = ModelEntry(name="tiny-copy", source="builtin:tiny", family="sd15")
    cache.acquire(other)
    assert cache.loaded_models() == ["tiny", "tiny-copy"]  # tiny-xl was least recent
    assert cache.total_bytes <= budget
    cache.acquire(TINY_XL)
    assert cache.loads["tiny-xl"] == 2


def test_a_model_larger_than_the_budget_still_loads(engine_settings: Settings) -> None:
    cache = PipelineCache(settings=engine_settings, budget_bytes=1)
    cache.acquire(TINY)
    cache.acquire(TINY_XL)
    assert cache.loaded_models() == ["tiny-xl"]


def test_loads_a_local_diffusers_folder(engine_settings: Settings, tmp_path: Path) -> None:
    import torch

    from engine import tiny

    tiny.load("tiny").save_pretrained(tmp_path / "my-model")
    cache = PipelineCache(settings=engine_settings)
    local = cache.acquire(
        ModelEntry(name="mine", source=str(tmp_path / "my-model"), family="sd15")
    )[0].pipe
    builtin = cache.acquire(TINY)[0].pipe
    for a, b in zip(local.unet.parameters(), builtin.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    assert local.tokenizer("a red cat").input_ids == builtin.tokenizer("a red cat").input_ids


def test_missing_hub_model_offline_is_a_clear_error(engine_settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = PipelineCache(settings=engine_settings)
    entry = ModelEntry(name="absent", source="proofroom-test/not-a-real-repo", family="sd15")
    with pytest.raises(ModelUnavailableError, match="`proofroom-test/not-a-real-repo`"):
        cache.acquire(entry)
    assert cache.loads["absent"] == 0


def test_lora_paths(engine_settings: Settings, tmp_path: Path) -> None:
    settings = engine_settings.model_copy(update={"lora_dir": tmp_path})
    cache = PipelineCache(settings=settings)
    builtin = cache.lora_path(LoraEntry(name="a", source="builtin:tiny-lora-a", families=["sd15"]))
    assert builtin.is_file() and builtin.is_relative_to(settings.model_cache_dir)
    (tmp_path / "brand.safetensors").write_bytes(b"x")
    entry = LoraEntry(name="brand", source="brand.safetensors", families=["sdxl"])
    assert cache.lora_path(entry) == (tmp_path / "brand.safetensors").resolve()
    with pytest.raises(CatalogError, match="missing"):
        cache.lora_path(LoraEntry(name="gone", source="gone.safetensors", families=["sdxl"]))
    with pytest.raises(CatalogError, match="outside"):
        cache.lora_path(LoraEntry(name="evil", source="../x.safetensors", families=["sdxl"]))


def test_device_choice(engine_settings: Settings) -> None:
    assert resolve_device(engine_settings) == "cpu"
    auto = engine_settings.model_copy(update={"device": None})
    assert resolve_device(auto) in {"cpu", "cuda"}
