"""Single-file checkpoints (issue "Models as teams have them"): the tiny models converted to
the original SD / SDXL key layout (tests/engine/single_file_fixtures.py), loaded offline with
their configs, rendered through the real path; pickles, truncated files and refiners refused
with a sentence; a VAE named by a model replaces its own."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine import clip_vocab, sources, tiny
from engine.catalog import Catalog, ModelEntry, VaeEntry
from engine.errors import CatalogError, ModelUnavailableError, UserError
from engine.merging import BATCH_TOLERANCE
from engine.pipelines import PipelineCache
from engine.render import render
from engine.settings import Settings
from tests.engine import single_file_fixtures as fixtures


@dataclass(frozen=True)
class Converted:
    """A tiny model as a diffusers folder (its ``config:``) and as one original-layout file."""

    folder: Path
    file: Path
    family: str


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Converted]:
    root = tmp_path_factory.mktemp("single-file")
    out = {}
    for name, family, convert in (
        ("tiny", "sd15", fixtures.sd15_state_dict),
        ("tiny-xl", "sdxl", fixtures.sdxl_state_dict),
    ):
        pipe = tiny.load(name)
        pipe.save_pretrained(root / name)
        file = fixtures.save(convert(pipe), root / "checkpoints" / f"{name}.safetensors")
        out[name] = Converted(folder=root / name, file=file, family=family)
    return out


def with_models(catalog: Catalog, *models: ModelEntry) -> Catalog:
    """The repository's catalog plus ``models``."""
    return Catalog(
        templates=catalog.templates,
        models={**catalog.models, **{m.name: m for m in models}},
        loras=catalog.loras,
        controlnets=catalog.controlnets,
        embeddings=catalog.embeddings,
        vaes=catalog.vaes,
    )


def entry(converted: Converted, name: str, **fields: Any) -> ModelEntry:
    values: dict[str, Any] = {
        "source": str(converted.file),
        "family": converted.family,
        "config": str(converted.folder),
    }
    return ModelEntry(name=name, **{**values, **fields})


@pytest.fixture()
def render_with(pipeline_cache: Any, artifact_store: Any, catalog: Catalog, pixels: Any) -> Any:
    """Render ``spec`` with the session cache and ``models`` added to the catalog; the pixels
    of its first image."""

    def run(spec: Any, *models: ModelEntry, cache: Any = None) -> Any:
        result = render(
            spec,
            cache=cache or pipeline_cache,
            store=artifact_store,
            catalog=with_models(catalog, *models),
        )
        return pixels(result.images[0].artifact_id)

    return run


def test_a_tiny_sd15_file_renders_the_pixels_of_the_model_it_came_from(
    converted: Any, tiny_job: Any, render_with: Any
) -> None:
    model = entry(converted["tiny"], "tiny-file")
    folder = ModelEntry(name="tiny-folder", source=str(converted["tiny"].folder), family="sd15")
    from_file = render_with(tiny_job(model="tiny-file"), model)
    assert from_file.shape == (64, 64, 3)
    assert np.array_equal(from_file, render_with(tiny_job(model="tiny-folder"), folder))
    # Not compared with builtin:tiny itself: a scheduler config read from disk keeps values
    # that the in-memory one marks as defaults, so another sampler made from it differs.
    # Its weights are the same (test_a_file_holds_the_weights_of_the_model_it_came_from).


def test_a_tiny_sdxl_file_renders_the_pixels_of_the_model_it_came_from(
    converted: Any, tiny_job: Any, render_with: Any
) -> None:
    model = entry(converted["tiny-xl"], "tiny-xl-file")
    spec = tiny_job(model="tiny-xl-file")
    folder = ModelEntry(
        name="tiny-xl-folder", source=str(converted["tiny-xl"].folder), family="sdxl"
    )
    from_file = render_with(spec, model)
    from_folder = render_with(tiny_job(model="tiny-xl-folder"), folder)
    # The weights are equal (below); tensors read from one file are laid out otherwise in
    # memory, and on some CPUs a kernel then rounds one value of the 12 288 a level apart.
    assert np.abs(from_file.astype(int) - from_folder).max() <= BATCH_TOLERANCE


@pytest.mark.parametrize("name", ["tiny", "tiny-xl"])
def test_a_file_holds_the_weights_of_the_model_it_came_from(
    converted: Any, engine_settings: Any, name: str
) -> None:
    # SDXL: diffusers tells its text encoders apart by width; the tiny ones are equally wide.
    model = entry(converted[name], f"{name}-file")
    pipe = PipelineCache(settings=engine_settings).acquire(model)[0].pipe
    builtin = tiny.load(name)
    for name in ("text_encoder", "text_encoder_2", "unet", "vae"):
        if not hasattr(builtin, name):
            continue
        got, want = getattr(pipe, name).state_dict(), getattr(builtin, name).state_dict()
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), name


def test_a_yaml_beside_the_file_describes_it_unless_a_config_folder_is_given(
    converted: Any, tmp_path: Path
) -> None:
    # End to end this needs real-size text encoders: with a yaml, what it does not describe
    # (text encoders, tokenizers, scheduler) comes from the family's shipped configs.
    file = tmp_path / "brand-v.safetensors"
    shutil.copy(converted["tiny"].file, file)
    assert sources.single_file_plan(file, family="sd2", config=None, name="b") == (
        sources.SingleFilePlan(config=sources.CONFIGS_DIR / "sd2", shipped=True)
    )
    yaml_file = file.with_suffix(".yaml")
    yaml_file.write_text('model:\n  params:\n    parameterization: "v"\n', encoding="utf-8")
    plan = sources.single_file_plan(file, family="sd2", config=None, name="b")
    assert plan.original_config == yaml_file and plan.config == sources.CONFIGS_DIR / "sd2"
    assert plan.prediction_type == "v_prediction" and plan.shipped
    yaml_file.write_text("model:\n  params:\n    linear_start: 0.00085\n", encoding="utf-8")
    assert sources.single_file_plan(file, family="sd2", config=None, name="b").prediction_type == (
        "epsilon"
    )
    folder = str(converted["tiny"].folder)
    given = sources.single_file_plan(file, family="sd2", config=folder, name="b")
    assert given == sources.SingleFilePlan(config=converted["tiny"].folder)


def test_a_config_that_is_not_a_diffusers_folder_is_a_sentence(
    converted: Any, engine_settings: Any, tmp_path: Path
) -> None:
    model = entry(converted["tiny"], "brand", config=str(tmp_path / "nowhere"))
    with pytest.raises(ModelUnavailableError, match="not a diffusers folder on this worker"):
        PipelineCache(settings=engine_settings).acquire(model)


@pytest.mark.skipif(
    importlib.util.find_spec("open_clip") is not None, reason="open-clip-torch is installed"
)
def test_without_open_clip_a_file_needing_a_shipped_tokenizer_is_refused(
    converted: Any, engine_settings: Any
) -> None:
    model = entry(converted["tiny"], "brand", config=None)
    cache = PipelineCache(settings=engine_settings)
    with pytest.raises(ModelUnavailableError) as caught:
        cache.acquire(model)
    assert "`pip install --no-deps open-clip-torch`" in caught.value.message
    assert caught.value.message.endswith("pick another model")
    assert cache.loads["brand"] == 0


def test_clip_tokenizers_are_built_from_the_bpe_file(tmp_path: Path) -> None:
    # open_clip's file: a version line, then merges by rank.
    bpe = tmp_path / "bpe.txt.gz"
    bpe.write_bytes(gzip.compress(b"#version: 0.2\nc a\nca t</w>\n"))
    openai = clip_vocab.clip_tokenizer(bpe, pad_token="<|endoftext|>")
    open_clip = clip_vocab.clip_tokenizer(bpe, pad_token="!")
    # 256 bytes, 256 word ends, then the merges (ca, cat</w>), then the two special tokens.
    assert openai("cat").input_ids == [514, 513, 515]
    assert open_clip("cat", padding="max_length", max_length=5).input_ids == [514, 513, 515, 0, 0]
    assert openai("cat", padding="max_length", max_length=5).input_ids == [514, 513, 515, 515, 515]
    pads = {
        "sd15/tokenizer": "<|endoftext|>",
        "sd2/tokenizer": "!",
        "sdxl/tokenizer": "<|endoftext|>",
        "sdxl/tokenizer_2": "!",
    }
    for folder, pad in pads.items():
        settings = json.loads((sources.CONFIGS_DIR / folder / "tokenizer_config.json").read_text())
        assert (settings["pad_token"], settings["model_max_length"]) == (pad, 77)


def test_the_shipped_configs_are_the_standard_models() -> None:
    from accelerate import init_empty_weights  # type: ignore[import-untyped]
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    expected = {  # parameters of SD 1.5, SD 2.1 and SDXL base 1.0
        "sd15": {"unet": 859_520_964, "text_encoder": 123_060_480},
        "sd2": {"unet": 865_910_724, "text_encoder": 340_387_840},
        "sdxl": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    }
    for family, sizes in expected.items():
        folder = sources.CONFIGS_DIR / family
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(folder / "unet")
            )
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            found = {"unet": count(unet), "vae": count(vae)}
            found["text_encoder"] = count(
                CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
            )
            if family == "sdxl":
                found["text_encoder_2"] = count(
                    CLIPTextModelWithProjection(
                        CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
                    )
                )
        assert found == {**sizes, "vae": 83_653_863}, family
    assert (
        json.loads((sources.CONFIGS_DIR / "sd2/scheduler/scheduler_config.json").read_text())[
            "prediction_type"
        ]
        == "epsilon"
    )  # 2.1-base, as SD-Turbo; a 768-v file needs its yaml or a config folder


def test_a_ckpt_is_refused_unless_pickles_are_allowed(
    converted: Any, engine_settings: Settings, tmp_path: Path
) -> None:
    file = tmp_path / "brand.ckpt"
    torch.save({"state_dict": fixtures.sd15_state_dict(tiny.load("tiny"))}, file)
    model = entry(converted["tiny"], "brand", source=str(file))
    with pytest.raises(ModelUnavailableError) as caught:
        PipelineCache(settings=engine_settings).acquire(model)
    message = caught.value.message
    assert message.startswith("model `brand` is a pickle file (brand.ckpt), which can run any code")
    assert "PROOFROOM_ALLOW_PICKLE=true" in message and message.endswith("pick another model")

    allowed = engine_settings.model_copy(update={"allow_pickle": True})
    pipe = PipelineCache(settings=allowed).acquire(model)[0].pipe
    want = tiny.load("tiny").unet.state_dict()
    assert all(torch.equal(pipe.unet.state_dict()[k], want[k]) for k in want)


def test_a_truncated_file_fails_the_job_with_a_sentence(
    converted: Any, tiny_job: Any, render_with: Any, pipeline_cache: Any, tmp_path: Path
) -> None:
    file = tmp_path / "brand.safetensors"
    data = converted["tiny"].file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    model = entry(converted["tiny"], "brand", source=str(file))
    with pytest.raises(ModelUnavailableError) as caught:
        render_with(tiny_job(model="brand"), model)
    message = caught.value.message
    assert isinstance(caught.value, UserError)  # run_job fails the job with it, no retry
    assert message.startswith(
        "model `brand`: its file brand.safetensors is incomplete or damaged ("
    )
    assert "truncated" in message and "most likely a download that stopped early." in message
    assert "\n" not in message and message.endswith("pick another model")
    assert pipeline_cache.loads["brand"] == 0
    file.write_bytes(data[:5])
    with pytest.raises(
        ModelUnavailableError, match=r"\(it is 5 bytes, too short for a safetensors"
    ):
        render_with(tiny_job(model="brand"), model)
    # The worker goes on: the next job renders.
    assert render_with(tiny_job()).shape == (64, 64, 3)


def test_an_sdxl_refiner_is_refused_as_a_model(
    converted: Any, engine_settings: Settings, tmp_path: Path
) -> None:
    state = fixtures.sdxl_state_dict(tiny.load("tiny-xl"))
    refiner = {
        k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v
        for k, v in state.items()
        if not k.startswith("conditioner.embedders.0.")
    }
    file = fixtures.save(refiner, tmp_path / "refiner.safetensors")
    model = entry(converted["tiny-xl"], "refiner", source=str(file))
    with pytest.raises(ModelUnavailableError, match="is an SDXL refiner") as caught:
        PipelineCache(settings=engine_settings).acquire(model)
    assert "cannot render a prompt on its own" in caught.value.message


@pytest.fixture(scope="module")
def other_vae() -> Any:
    """A tiny VAE with other random weights than the tiny models' own."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        return AutoencoderKL.from_config(tiny.load("tiny").vae.config).eval()


def test_a_vae_file_named_by_a_model_changes_the_decode(
    other_vae: Any, tiny_job: Any, render_with: Any, engine_settings: Any, tmp_path: Path
) -> None:
    # A standalone VAE file: the original layout without the checkpoint's prefix.
    state = {
        k.removeprefix("first_stage_model."): v for k, v in fixtures.convert_vae(other_vae).items()
    }
    file = fixtures.save(state, tmp_path / "other-vae.safetensors")
    model = ModelEntry(name="tiny-vae", source="builtin:tiny", family="sd15", vae=str(file))
    with_vae = render_with(tiny_job(model="tiny-vae"), model)
    assert not np.array_equal(with_vae, render_with(tiny_job()))

    # It is exactly that VAE: the same pixels as the tiny pipeline given it by hand.
    cache = PipelineCache(settings=engine_settings)
    loaded = cache.acquire(model)[0].pipe.vae.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in other_vae.state_dict().items())
    assert np.array_equal(with_vae, render_with(tiny_job(model="tiny-vae"), model, cache=cache))


def test_a_catalog_vae_folder_replaces_the_models_own(
    other_vae: Any, engine_settings: Any, tmp_path: Path
) -> None:
    other_vae.save_pretrained(tmp_path / "vae-folder")
    model = ModelEntry(name="tiny-named", source="builtin:tiny", family="sd15", vae="soft")
    cache = PipelineCache(settings=engine_settings)
    vae = VaeEntry(name="soft", source=str(tmp_path / "vae-folder"), families=["sd15"])
    loaded = cache.acquire(model, vae=vae)[0].pipe.vae.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in other_vae.state_dict().items())

    with pytest.raises(CatalogError, match="made for sdxl models, not sd15"):
        cache.acquire(
            model.model_copy(update={"name": "x"}),
            vae=vae.model_copy(update={"families": ["sdxl"]}),
        )
    with pytest.raises(CatalogError, match="names VAE `soft`, which is not in the catalog"):
        cache.acquire(model.model_copy(update={"name": "y"}))
