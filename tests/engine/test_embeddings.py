"""Textual-inversion embeddings: finding them in prompts, reading A1111/diffusers/SDXL files,
and rendering with them through the real path (PipelineCache + engine.render.render) on the
tiny models. Embedding files are made here: random vectors of the tiny encoders' width."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.catalog import Catalog, EmbeddingEntry, Family
from engine.embeddings import embedding_words, family_of, read_embedding
from engine.errors import CatalogError, SpecError
from engine.prompts import CHUNK, chunk_tokens
from engine.settings import REPO_ROOT, Settings

# --- which words are embeddings (pure) ---------------------------------------------------


def test_embedding_words_are_whole_words_in_any_case_and_inside_weights() -> None:
    names = ["easynegative", "bad-hands", "bad", "style"]
    assert embedding_words("ugly, (EasyNegative:1.2), BAD-HANDS", names) == [
        "easynegative",
        "bad-hands",
    ]
    assert embedding_words("[bad] easynegative easynegative", names) == ["bad", "easynegative"]
    # part of a longer word, or another word, is text
    assert embedding_words("easynegatives, easynegative_v2, badly, stylish", names) == []
    assert embedding_words("anything", []) == []


def test_embedding_words_needs_no_torch() -> None:
    code = (
        "import sys, engine.embeddings as e; e.embedding_words('a x', ['x']);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_an_embedding_that_would_cross_a_chunk_starts_the_next_one() -> None:
    text = (list(range(CHUNK - 1)), 1.0)
    chunks = chunk_tokens([text, ([900, 901], 1.2)], whole={1})
    assert [len(c.ids) for c in chunks] == [CHUNK - 1, 2]
    assert chunks[1].weights == [1.2, 1.2]
    # the same ids as text are cut where the chunk is full
    assert [len(c.ids) for c in chunk_tokens([text, ([900, 901], 1.2)])] == [CHUNK, 1]


# --- files --------------------------------------------------------------------------------


def _vectors(rows: int, width: int, seed: int, scale: float = 1.0) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, width, generator=generator) * scale


def _a1111_pt(path: Path, vectors: Any) -> Path:
    import torch

    data = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": torch.nn.Parameter(vectors)},
        "name": path.stem,
        "step": 1000,
        "sd_checkpoint": "abcdef12",
        "sd_checkpoint_name": "v1-5-pruned",
    }
    torch.save(data, path)
    return path


def _safetensors(path: Path, tensors: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_reads_a1111_diffusers_and_sdxl_files(tmp_path: Path) -> None:
    import torch

    one = _vectors(1, 768, 1)
    two = _vectors(2, 1024, 2)
    pt = read_embedding(_a1111_pt(tmp_path / "EasyNegative.pt", one))
    assert set(pt) == {"clip"} and torch.equal(pt["clip"], one)
    assert family_of(pt) == "sd15"
    st = read_embedding(_safetensors(tmp_path / "two.safetensors", {"emb_params": two}))
    assert st["clip"].shape == (2, 1024) and family_of(st) == "sd2"
    torch.save({"<cat-toy>": one[0]}, tmp_path / "learned_embeds.bin")  # diffusers, 1-D
    assert read_embedding(tmp_path / "learned_embeds.bin")["clip"].shape == (1, 768)
    pair = {"clip_l": _vectors(3, 768, 3), "clip_g": _vectors(3, 1280, 4)}
    xl = read_embedding(_safetensors(tmp_path / "xl.safetensors", pair))
    assert {k: tuple(v.shape) for k, v in xl.items()} == {"clip_l": (3, 768), "clip_g": (3, 1280)}
    assert family_of(xl) == "sdxl"


def test_a_file_that_is_not_an_embedding_is_a_sentence(tmp_path: Path) -> None:
    path = _safetensors(
        tmp_path / "lora.safetensors", {"a": _vectors(1, 4, 1), "b": _vectors(1, 4, 2)}
    )
    with pytest.raises(CatalogError, match="not a textual-inversion embedding"):
        read_embedding(path, name="lora")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(CatalogError, match="cannot be read"):
        read_embedding(tmp_path / "junk.pt")


CALLS: list[str] = []


def _record(what: str) -> None:
    CALLS.append(what)


class _Payload:
    """Unpickling this calls ``_record``: what a malicious .pt would do with os.system."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record, ("unpickled",))


def test_a_pt_with_a_pickled_object_is_refused_unrun(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "evil.pt"
    torch.save({"string_to_param": {"*": _vectors(1, 32, 1)}, "extra": _Payload()}, path)
    with pytest.raises(CatalogError, match="only read when it holds nothing but tensors"):
        read_embedding(path, name="evil")
    assert CALLS == []  # weights_only: nothing was run


# --- rendering through the real path ------------------------------------------------------


@pytest.fixture(scope="module")
def widths(pipeline_cache: Any, catalog: Catalog) -> dict[str, tuple[int, float]]:
    """Per tiny model: its text encoder's width and the spread of its token table (so the
    random embeddings are as loud as real tokens)."""
    found = {}
    for model in ("tiny", "tiny-xl"):
        pipe = pipeline_cache.acquire(catalog.model(model))[0].pipe
        table = pipe.text_encoder.get_input_embeddings().weight
        found[model] = (pipe.text_encoder.config.hidden_size, float(table.detach().std()))
    return found


@pytest.fixture()
def files(tmp_path: Path, widths: dict[str, tuple[int, float]]) -> dict[str, Path]:
    """Embedding files for the tiny models, in every layout."""
    width, scale = widths["tiny"]
    xl_width, xl_scale = widths["tiny-xl"]
    return {
        "pt": _a1111_pt(tmp_path / "EasyNegative.pt", _vectors(1, width, 11, scale)),
        "safetensors": _safetensors(
            tmp_path / "other.safetensors", {"emb_params": _vectors(1, width, 12, scale)}
        ),
        "two": _safetensors(
            tmp_path / "two.safetensors", {"emb_params": _vectors(2, width, 13, scale)}
        ),
        "xl": _safetensors(
            tmp_path / "xl.safetensors",
            {
                "clip_l": _vectors(2, xl_width, 14, xl_scale),
                "clip_g": _vectors(2, xl_width, 15, xl_scale),
            },
        ),
    }


def _catalog(settings: Settings, **entries: tuple[Path, list[Family]]) -> Catalog:
    catalog = Catalog.load(settings.templates_dir)
    for name, (path, families) in entries.items():
        catalog.embeddings[name] = EmbeddingEntry(
            name=name,
            source=str(path.resolve()),
            families=families,
        )
    return catalog


@pytest.fixture()
def draw(pipeline_cache: Any, artifact_store: Any, tiny_job: Any, pixels: Any) -> Any:
    """Render one tiny image with a catalog; its pixels."""
    from engine.render import render

    def run(catalog: Catalog, *, cache: Any = None, **fields: Any) -> Any:
        spec = tiny_job(**fields)
        result = render(spec, cache=cache or pipeline_cache, store=artifact_store, catalog=catalog)
        return pixels(result.images[0].artifact_id)

    return run


def test_an_embedding_in_the_negative_changes_the_render_and_loads_once(
    draw: Any, files: dict[str, Path], engine_settings: Settings, pipeline_cache: Any
) -> None:
    from engine.pipelines import PipelineCache

    negative = "ugly, EasyNegative"
    with_it = _catalog(engine_settings, easynegative=(files["pt"], ["sd15"]))
    without = _catalog(engine_settings)
    used = draw(with_it, negative_prompt=negative)
    loaded = pipeline_cache.acquire(with_it.model("tiny"))[0]
    vocabulary = len(loaded.pipe.tokenizer)
    path, tokens = loaded.embeddings["easynegative"]
    assert path == str(files["pt"].resolve()) and tokens[0].startswith("<ti:easynegative")
    assert len(tokens) == 1
    assert np.array_equal(draw(with_it, negative_prompt=negative), used)  # resident
    assert len(loaded.pipe.tokenizer) == vocabulary  # not loaded twice
    # Without the embedding in the catalog the word is text: the very image a pipeline that
    # never held an embedding renders, though this one still holds it.
    as_text = draw(without, negative_prompt=negative)
    fresh = draw(without, cache=PipelineCache(settings=engine_settings), negative_prompt=negative)
    assert np.array_equal(as_text, fresh)
    assert not np.array_equal(used, as_text)
    # The catalog pointing the name at another file (a reload): that file is loaded.
    repointed = _catalog(engine_settings, easynegative=(files["safetensors"], ["sd15"]))
    assert not np.array_equal(draw(repointed, negative_prompt=negative), used)
    assert loaded.embeddings["easynegative"][0] == str(files["safetensors"].resolve())
    # ... and in the prompt it counts too, in any case
    assert not np.array_equal(
        draw(with_it, prompt="a cat, EASYNEGATIVE"), draw(without, prompt="a cat, EASYNEGATIVE")
    )


def test_weighting_applies_to_an_embedding(
    draw: Any, files: dict[str, Path], engine_settings: Settings
) -> None:
    catalog = _catalog(engine_settings, other=(files["safetensors"], ["sd15"]))
    plain = draw(catalog, negative_prompt="ugly, other")
    weighted = draw(catalog, negative_prompt="ugly, (Other:1.2)")
    assert not np.array_equal(plain, weighted)
    assert np.array_equal(draw(catalog, negative_prompt="ugly, (other:1.2)"), weighted)
    assert not np.array_equal(plain, draw(_catalog(engine_settings), negative_prompt="ugly, other"))


def test_a_multi_vector_embedding_uses_every_vector(
    draw: Any, files: dict[str, Path], engine_settings: Settings, pipeline_cache: Any
) -> None:
    import torch

    from engine.prompts import encode_prompts, token_count

    catalog = _catalog(engine_settings, two=(files["two"], ["sd15"]))
    used = draw(catalog, negative_prompt="two")
    assert not np.array_equal(used, draw(_catalog(engine_settings), negative_prompt="two"))
    loaded = pipeline_cache.acquire(catalog.model("tiny"))[0]
    path, tokens = loaded.embeddings["two"]
    assert tokens == [tokens[0], f"{tokens[0]}_1"] and tokens[0].startswith("<ti:two")
    pipe, words = loaded.pipe, {"two": tokens}
    assert token_count(pipe.tokenizer, "a (two:1.1) cat", embeddings=words) == 4
    # both vectors are encoded: the second one changes the encoding too
    both = encode_prompts(pipe, "two", embeddings=words).prompt_embeds
    first = encode_prompts(pipe, "two", embeddings={"two": tokens[:1]}).prompt_embeds
    assert not torch.equal(both, first)


def test_an_sdxl_pair_works_on_tiny_xl(
    draw: Any, files: dict[str, Path], engine_settings: Settings, pipeline_cache: Any
) -> None:
    catalog = _catalog(engine_settings, xlneg=(files["xl"], ["sdxl"]))
    fields = {"model": "tiny-xl", "negative_prompt": "ugly, (xlneg:1.1)"}
    used = draw(catalog, **fields)
    assert not np.array_equal(used, draw(_catalog(engine_settings), **fields))
    loaded = pipeline_cache.acquire(catalog.model("tiny-xl"))[0]
    _, tokens = loaded.embeddings["xlneg"]
    assert len(tokens) == 2
    for tokenizer in (loaded.pipe.tokenizer, loaded.pipe.tokenizer_2):
        assert set(tokens) <= set(tokenizer.added_tokens_encoder)


def test_an_sd15_embedding_in_a_tiny_xl_prompt_is_a_sentence(
    draw: Any, files: dict[str, Path], engine_settings: Settings
) -> None:
    catalog = _catalog(engine_settings, easynegative=(files["pt"], ["sd15"]))
    with pytest.raises(SpecError, match=r"made for sd15 models and cannot be used with `tiny-xl`"):
        draw(catalog, model="tiny-xl", negative_prompt="EasyNegative")
    # Listed for the wrong family, the file itself tells: one vector set, no clip_l/clip_g.
    wrong = _catalog(engine_settings, easynegative=(files["pt"], ["sd15", "sdxl"]))
    with pytest.raises(SpecError, match=r"does not fit `tiny-xl` \(sdxl\)"):
        draw(wrong, model="tiny-xl", negative_prompt="EasyNegative")
    # and the pair does not fit the SD1.5-shaped model
    pair = _catalog(engine_settings, xlneg=(files["xl"], []))
    with pytest.raises(SpecError, match=r"SDXL pair .* does not fit `tiny` \(sd15\)"):
        draw(pair, negative_prompt="xlneg")


def test_a_missing_file_is_a_sentence(draw: Any, engine_settings: Settings, tmp_path: Path) -> None:
    catalog = _catalog(engine_settings, gone=(tmp_path / "gone.pt", ["sd15"]))
    with pytest.raises(CatalogError, match="`gone` is in the catalog but its file"):
        draw(catalog, negative_prompt="gone")


def test_embeddings_and_loras_load_in_either_order(
    draw: Any, files: dict[str, Path], engine_settings: Settings
) -> None:
    from engine.pipelines import PipelineCache
    from engine.spec import LoraRef

    catalog = _catalog(engine_settings, two=(files["two"], ["sd15"]))
    both = {"negative_prompt": "two", "loras": [LoraRef(name="tiny-style", weight=0.8)]}
    embedding_first = PipelineCache(settings=engine_settings)
    draw(catalog, cache=embedding_first, negative_prompt="two")
    lora_first = PipelineCache(settings=engine_settings)
    draw(catalog, cache=lora_first, loras=both["loras"])
    assert np.array_equal(
        draw(catalog, cache=embedding_first, **both), draw(catalog, cache=lora_first, **both)
    )
    assert not np.array_equal(
        draw(catalog, cache=lora_first, **both),
        draw(catalog, cache=lora_first, loras=both["loras"]),
    )
