"""The built-in offline models: tokenizer, deterministic weights, generated LoRAs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from engine import tiny
from engine.prompts import token_count


def _words() -> list[str]:
    lines = tiny.WORDS_FILE.read_text().splitlines()
    return [w for w in lines if w and not w.startswith("#")]


def test_every_listed_word_is_one_token() -> None:
    tokenizer = tiny.tokenizer()
    words = _words()
    assert len(words) >= 300
    for word in words:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_unknown_words_fall_back_to_bytes_and_differ() -> None:
    tokenizer = tiny.tokenizer()
    ids = tokenizer("zqxj café 🌸", add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids
    assert len(ids) > 3
    assert tokenizer("a red cat").input_ids != tokenizer("a blue cat").input_ids
    assert tokenizer.model_max_length == 77
    assert token_count(tokenizer, " ".join(_words()[:150])) == 150


def test_text_encoder_matches_the_tokenizer() -> None:
    pipe = tiny.load("tiny")
    tokenizer, config = pipe.tokenizer, pipe.text_encoder.config
    assert config.vocab_size == len(tokenizer)
    assert (config.bos_token_id, config.eos_token_id) == (
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
    )


def test_pipeline_classes_and_independent_copies() -> None:
    first, second = tiny.load("tiny"), tiny.load("tiny")
    assert isinstance(first, StableDiffusionPipeline)
    assert isinstance(tiny.load("tiny-xl"), StableDiffusionXLPipeline)
    assert first.unet is not second.unet
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.unet.parameters(), second.unet.parameters(), strict=True)
    )
    with torch.no_grad():
        next(first.unet.parameters()).add_(1.0)
    assert not torch.equal(next(first.unet.parameters()), next(tiny.load("tiny").unet.parameters()))


def test_building_does_not_touch_the_callers_random_state() -> None:
    tiny._components.cache_clear()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.load("tiny")
    assert torch.equal(torch.rand(3), expected)


def test_unknown_builtin_names() -> None:
    with pytest.raises(KeyError):
        tiny.load("huge")
    with pytest.raises(KeyError):
        tiny.lora_file("nope", cache_dir=Path("/nonexistent"))


def test_lora_files_are_deterministic_and_cached(tmp_path: Path) -> None:
    first = tiny.lora_file("tiny-lora-a", cache_dir=tmp_path / "one")
    again = tiny.lora_file("tiny-lora-a", cache_dir=tmp_path / "two")
    other = tiny.lora_file("tiny-lora-b", cache_dir=tmp_path / "one")
    assert first.parent == tmp_path / "one" / "loras"
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert tiny.lora_file("tiny-lora-a", cache_dir=tmp_path / "one") == first


def test_lora_file_loads_as_a_named_adapter(tmp_path: Path) -> None:
    for model, lora in (("tiny", "tiny-lora-a"), ("tiny-xl", "tiny-xl-lora")):
        pipe = tiny.load(model)
        pipe.load_lora_weights(str(tiny.lora_file(lora, cache_dir=tmp_path)), adapter_name="x")
        assert "x" in pipe.get_list_adapters()["unet"]
        assert "x" in pipe.get_list_adapters()["text_encoder"]
