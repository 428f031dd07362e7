"""Files' hashes in the ``parameters`` text as A1111 writes them (``Model hash``, ``Lora
hashes``, ``TI hashes``): the line, parsing it back, a third-party reader (sd-parsers) on a
PNG of ours, the worker's model hash, and ``Lora hashes`` in the PNG of a real tiny render."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine import metadata
from engine.catalog import Catalog, LoraEntry, ModelEntry
from engine.metadata import ResourceHashes
from engine.settings import Settings
from engine.spec import JobSpec, LoraRef
from tests.engine.jobs_fixtures import MODEL_CACHE

COMMON: dict[str, Any] = {
    "prompt": "a red cat",
    "negative_prompt": "blurry",
    "steps": 20,
    "sampler": "Euler a",
    "cfg_scale": 7.0,
    "seed": 5,
    "width": 512,
    "height": 768,
}


def test_model_hash_before_model_and_hash_lists_last_as_a1111_writes_them() -> None:
    text = metadata.format_parameters(
        **COMMON,
        model="sd15",
        loras=[("style", 0.8)],
        extra={"Denoising strength": 0.6},
        model_hash="6ce0161689",
        lora_hashes={"style": "7c6bad76eb54", "brand": "0123456789ab"},
        embedding_hashes={"bad-hands": "aabbccddeeff"},
    )
    assert text == (
        "a red cat\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768, "
        'Model hash: 6ce0161689, Model: sd15, Lora: "style:0.8", Denoising strength: 0.6, '
        'Lora hashes: "style: 7c6bad76eb54, brand: 0123456789ab", '
        'TI hashes: "bad-hands: aabbccddeeff"'
    )
    params = metadata.parse_parameters(text)
    assert params["Model hash"] == "6ce0161689"
    assert params["Model"] == "sd15"
    assert metadata.parse_hash_list(params["Lora hashes"]) == {
        "style": "7c6bad76eb54",
        "brand": "0123456789ab",
    }
    assert metadata.parse_hash_list(params["TI hashes"]) == {"bad-hands": "aabbccddeeff"}


def test_no_hash_no_field() -> None:
    plain = metadata.format_parameters(**COMMON, model="tiny")
    empty: dict[str, Any] = {"model_hash": None, "lora_hashes": {}, "embedding_hashes": None}
    assert metadata.format_parameters(**COMMON, model="tiny", **empty) == plain
    # A LoRA whose file could not be hashed is left out, as A1111 skips an empty shorthash.
    text = metadata.format_parameters(**COMMON, lora_hashes={"a": "", "b": "0123456789ab"})
    assert 'Lora hashes: "b: 0123456789ab"' in text
    assert "Lora hashes" not in metadata.format_parameters(**COMMON, lora_hashes={"a": ""})
    # Model hash without a model name still comes where A1111 puts it: after Size.
    text = metadata.format_parameters(**COMMON, model_hash="6ce0161689")
    assert text.endswith("Size: 512x768, Model hash: 6ce0161689")


def test_names_lose_colons_and_commas_as_in_a1111() -> None:
    # A1111: alias.replace(":", "").replace(",", "") before f"{alias}: {shorthash}"
    assert metadata.hash_list({"style:v2, final": "0123456789ab"}) == "stylev2 final: 0123456789ab"
    text = metadata.format_parameters(**COMMON, embedding_hashes={"emb:1": "aabbccddeeff"})
    assert metadata.parse_hash_list(metadata.parse_parameters(text)["TI hashes"]) == {
        "emb1": "aabbccddeeff"
    }


def test_reads_the_hashes_of_an_a1111_line() -> None:
    text = (
        "1girl, <lora:add_detail:0.5>, easynegative\nNegative prompt: lowres\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
        'Lora hashes: "add_detail: 7c6bad76eb54, more: 000011112222", '
        'TI hashes: "easynegative: c74b4e810b03", Version: v1.9.4'
    )
    params = metadata.parse_parameters(text)
    assert params["Model hash"] == "6ce0161689"
    assert metadata.parse_hash_list(params["Lora hashes"]) == {
        "add_detail": "7c6bad76eb54",
        "more": "000011112222",
    }
    assert metadata.parse_hash_list(params["TI hashes"]) == {"easynegative": "c74b4e810b03"}
    assert params["Version"] == "v1.9.4"


def test_parameters_for_a_spec_with_hashes() -> None:
    spec = JobSpec(prompt="a cat", model="sd15", seed=3, loras=[LoraRef(name="style", weight=1)])
    hashes = ResourceHashes(model="6ce0161689", loras={"style": "7c6bad76eb54"})
    params = metadata.parse_parameters(metadata.parameters_for(spec, 0, hashes=hashes))
    assert (params["Model hash"], params["Lora hashes"]) == ("6ce0161689", "style: 7c6bad76eb54")
    # The embeddings' engineer hands theirs in the same way.
    with_ti = ResourceHashes(embeddings={"bad-hands": "aabbccddeeff"})
    params = metadata.parse_parameters(metadata.parameters_for(spec, 0, hashes=with_ti))
    assert params["TI hashes"] == "bad-hands: aabbccddeeff"
    assert "Model hash" not in params and "Lora hashes" not in params
    assert metadata.parameters_for(spec, 0) == metadata.parameters_for(spec, 0, hashes=None)


def test_sd_parsers_reads_the_model_hash_of_our_png() -> None:
    from sd_parsers import ParserManager
    from sd_parsers.data import Generators

    text = metadata.format_parameters(
        **COMMON,
        model="sd15",
        model_hash="6ce0161689",
        lora_hashes={"style": "7c6bad76eb54"},
        embedding_hashes={"bad-hands": "aabbccddeeff"},
    )
    png = metadata.png_with_parameters(Image.new("RGB", (8, 8)), text, proofroom={"a": 1})
    info = ParserManager().parse(io.BytesIO(png))
    assert info is not None and info.generator is Generators.AUTOMATIC1111
    [model] = info.models
    assert (model.name, model.hash) == ("sd15", "6ce0161689")
    [sampler] = info.samplers
    assert sampler.name == "Euler a"
    assert sampler.parameters == {"cfg_scale": "7", "seed": "5", "steps": "20"}
    assert info.full_prompt == "a red cat" and info.full_negative_prompt == "blurry"


def test_model_hash_of_a_local_single_file_model(tmp_path: Path) -> None:
    from engine.pipelines import PipelineCache

    data = b"not really a checkpoint" * 1000
    checkpoint = tmp_path / "team-model.safetensors"
    checkpoint.write_bytes(data)
    settings = Settings(model_cache_dir=tmp_path / "cache", device="cpu")
    cache = PipelineCache(settings=settings)
    local = ModelEntry(name="team", source=str(checkpoint), family="sd15")
    assert cache.model_hash(local) == hashlib.sha256(data).hexdigest()[:10]
    assert cache.model_hash(local) == cache.model_hash(local)
    assert cache.hashes.computed == {f"sha256:{checkpoint.resolve()}": 1}
    folder = ModelEntry(name="folder", source=str(tmp_path), family="sd15")
    hub = ModelEntry(name="hub", source="stabilityai/sd-turbo", family="sd2")
    builtin = ModelEntry(name="tiny", source="builtin:tiny", family="sd15")
    assert cache.model_hash(folder) is cache.model_hash(hub) is cache.model_hash(builtin) is None


@pytest.fixture()
def team_lora(tmp_path: Path) -> Path:
    """A tiny sd15 LoRA as a team's file: a .safetensors in this test's LoRA folder."""
    from engine import tiny

    path = tmp_path / "loras" / "team-style.safetensors"
    path.parent.mkdir()
    shutil.copyfile(tiny.lora_file("tiny-lora-a", cache_dir=MODEL_CACHE), path)
    return path


def test_lora_hashes_in_the_png_of_a_real_tiny_render(
    tmp_path: Path, team_lora: Path, catalog: Catalog, artifact_store: Any, tiny_job: Any
) -> None:
    from sd_parsers import ParserManager

    from engine.pipelines import PipelineCache
    from engine.render import render

    entry = LoraEntry(name="team-style", source=team_lora.name, families=["sd15"])
    ours = Catalog(templates={}, models=catalog.models, loras={"team-style": entry})
    settings = Settings(lora_dir=team_lora.parent, model_cache_dir=tmp_path / "cache", device="cpu")
    cache = PipelineCache(settings=settings)
    data = team_lora.read_bytes()
    n = int.from_bytes(data[:8], "little")
    expected = hashlib.sha256(data[n + 8 :]).hexdigest()[:12]  # A1111's addnet hash

    spec = tiny_job(loras=[LoraRef(name="team-style", weight=0.8)], count=2)
    for _ in range(2):
        result = render(spec, cache=cache, store=artifact_store, catalog=ours)
        for image in result.images:
            png = artifact_store.get(image.artifact_id)
            params = metadata.parse_parameters(metadata.read_parameters(png) or "")
            assert metadata.parse_hash_list(params["Lora hashes"]) == {"team-style": expected}
            assert params["Lora"] == "team-style:0.8"
            assert "Model hash" not in params  # the built-in tiny model has no file
    # Hashed once, when first read, over two jobs of two images.
    assert cache.hashes.computed == {f"lora:{team_lora.resolve()}": 1}
    assert dict(cache.lora_reads) == {str(team_lora.resolve()): 1}
    # A third-party reader still reads the image (its model has a name, no hash).
    info = ParserManager().parse(io.BytesIO(png))
    assert info is not None
    assert [(m.name, m.hash) for m in info.models] == [("tiny", None)]
    # Without LoRAs, no Lora hashes.
    plain = render(tiny_job(), cache=cache, store=artifact_store, catalog=ours)
    text = metadata.read_parameters(artifact_store.get(plain.images[0].artifact_id)) or ""
    assert "hashes" not in text
