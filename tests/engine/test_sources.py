"""Model sources whose weights are not on the worker (issue 12, item 7a): one sentence that
names the model, its source and how to get it; never a traceback for the user."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest

from engine.catalog import ControlNetEntry, ModelEntry
from engine.errors import ModelUnavailableError
from engine.pipelines import PipelineCache
from engine.settings import Settings
from engine.sources import looks_like_path


@pytest.fixture()
def empty_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline, with an empty Hugging Face cache (what a fresh worker without internet has).
    huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, at import: set what it read."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_catalog_model_not_downloaded_fails_with_how_to_get_it(
    empty_hub_cache, tiny_job, run_job, pipeline_cache
) -> None:
    spec = tiny_job(model="sd-turbo", width=512, height=512, steps=2, cfg_scale=1.0)

    with pytest.raises(ModelUnavailableError) as caught:
        run_job(spec)

    message = caught.value.message
    assert caught.value.kind == "model_unavailable"
    assert message.startswith(
        "model `sd-turbo` is not downloaded on this worker: `stabilityai/sd-turbo` is not in "
        "its Hugging Face cache and the Hub is offline here (HF_HUB_OFFLINE=1)."
    )
    assert "`hf download stabilityai/sd-turbo`" in message
    assert "templates/models.yaml" in message and message.endswith("pick another model")
    assert "\n" not in message and "Traceback" not in message
    assert pipeline_cache.loads["sd-turbo"] == 0
    assert list(empty_hub_cache.iterdir()) == []  # nothing was fetched or half-written


def test_a_missing_local_folder_or_file_is_named(engine_settings: Settings) -> None:
    cache = PipelineCache(settings=engine_settings)
    for source in ("/models/brand-v2", "./models/brand-v2.safetensors", "~/sd/a/b"):
        entry = ModelEntry(name="brand", source=source, family="sd15")
        with pytest.raises(ModelUnavailableError, match="which is not on this worker") as caught:
            cache.acquire(entry)
        assert f"model `brand` points at `{source}`" in caught.value.message


def test_an_invalid_repo_id_is_a_sentence_too(empty_hub_cache, engine_settings: Settings) -> None:
    cache = PipelineCache(settings=engine_settings)
    with pytest.raises(ModelUnavailableError, match="`hf download not a/valid repo`"):
        cache.acquire(ModelEntry(name="odd", source="not a/valid repo", family="sd15"))


def test_a_controlnet_not_downloaded_points_at_its_yaml(
    empty_hub_cache, engine_settings: Settings
) -> None:
    cache = PipelineCache(settings=engine_settings)
    entry = ControlNetEntry(
        name="canny-sd15", source="lllyasviel/sd-controlnet-canny", family="sd15", control="canny"
    )
    with pytest.raises(ModelUnavailableError) as caught:
        cache.acquire_controlnet(entry)
    assert caught.value.message.startswith("ControlNet `canny-sd15` is not downloaded")
    assert "templates/controlnets.yaml" in caught.value.message
    assert caught.value.message.endswith("pick another ControlNet")


def test_a_folder_that_is_there_but_broken_stays_an_internal_error(
    engine_settings: Settings, tmp_path: Path
) -> None:
    # The admin needs the traceback here; the user sees "something went wrong on our side".
    (tmp_path / "broken").mkdir()
    cache = PipelineCache(settings=engine_settings)
    entry = ModelEntry(name="broken", source=str(tmp_path / "broken"), family="sd15")
    with pytest.raises(RuntimeError, match="cannot load model broken from"):
        cache.acquire(entry)


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("stabilityai/sd-turbo", False),
        ("gpt2", False),
        ("/srv/models/sdxl", True),
        ("./models/sdxl", True),
        ("~/models/sdxl", True),
        ("models/checkpoints/brand.safetensors", True),
        ("brand.ckpt", True),
        ("models/in/depth", True),
    ],
)
def test_paths_and_repo_ids(source: str, path: bool) -> None:
    assert looks_like_path(source) is path
