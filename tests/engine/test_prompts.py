"""A1111 prompt syntax: the pure parser and chunker, then encoding with the tiny models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.prompts import CHUNK, chunk_tokens, parse_weights

REPO_ROOT = Path(__file__).resolve().parents[2]


def approx(pairs: list[tuple[str, float]]) -> list[tuple[str, object]]:
    return [(text, pytest.approx(weight)) for text, weight in pairs]


# The examples from AUTOMATIC1111's own docstring of parse_prompt_attention.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.573),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641),
                (".", 1.1),
            ],
        ),
    ],
)
def test_a1111_examples(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_weights(text) == approx(expected)


def test_weights_brackets_and_escapes() -> None:
    assert parse_weights("a (red:1.5) cat") == approx([("a ", 1.0), ("red", 1.5), (" cat", 1.0)])
    assert parse_weights("((word))") == approx([("word", 1.21)])
    assert parse_weights("[word]") == approx([("word", 1 / 1.1)])
    assert parse_weights("[[word]]") == approx([("word", 1 / 1.21)])
    assert parse_weights("(a (b:2) c:0.5)") == approx([("a ", 0.5), ("b", 1.0), (" c", 0.5)])
    assert parse_weights("logo \\(tm\\)") == [("logo (tm)", 1.0)]
    assert parse_weights("ratio 16:9") == [("ratio 16:9", 1.0)]
    assert parse_weights("") == [("", 1.0)]


def test_break_is_its_own_marker() -> None:
    assert parse_weights("a red cat BREAK a (blue:1.2) dog") == approx(
        [("a red cat", 1.0), ("BREAK", -1.0), ("a ", 1.0), ("blue", 1.2), (" dog", 1.0)]
    )
    assert parse_weights("BREAKFAST") == [("BREAKFAST", 1.0)]  # only the whole word


def test_chunks_of_75_and_nothing_dropped() -> None:
    chunks = chunk_tokens([(list(range(150)), 1.0)])
    assert [len(c.ids) for c in chunks] == [CHUNK, CHUNK]
    assert [t for c in chunks for t in c.ids] == list(range(150))
    assert [len(c.ids) for c in chunk_tokens([(list(range(76)), 1.2)])] == [75, 1]
    assert chunk_tokens([(list(range(76)), 1.2)])[1].weights == [1.2]
    assert [len(c.ids) for c in chunk_tokens([])] == [0]


def test_full_chunk_is_cut_after_a_recent_comma() -> None:
    comma = 999
    ids = list(range(70)) + [comma] + list(range(100, 110))
    chunks = chunk_tokens([(ids, 1.0)], comma_id=comma)
    assert chunks[0].ids == list(range(70)) + [comma]
    assert chunks[1].ids == list(range(100, 110))


def test_break_starts_a_new_chunk() -> None:
    chunks = chunk_tokens([([1, 2], 1.0), ([], -1.0), ([3], 1.3)])
    assert [c.ids for c in chunks] == [[1, 2], [3]]
    assert chunks[1].weights == [1.3]


def test_importing_prompts_does_not_import_torch() -> None:
    code = (
        "import sys, engine.prompts as p; p.parse_weights('(a:1.2)'); p.chunk_tokens([([1], 1.0)]);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


# --- encoding (torch, tiny models) ---------------------------------------------------------


@pytest.fixture(scope="module")
def sd_pipe():
    from engine import tiny

    return tiny.load("tiny")


@pytest.fixture(scope="module")
def xl_pipe():
    from engine import tiny

    return tiny.load("tiny-xl")


def test_short_plain_prompt_matches_diffusers_encoding(sd_pipe) -> None:
    import torch

    from engine.prompts import encode_prompts

    ours = encode_prompts(sd_pipe, "a red cat", "blurry")
    theirs, theirs_negative = sd_pipe.encode_prompt(
        "a red cat", "cpu", 1, True, negative_prompt="blurry"
    )
    assert ours.prompt_embeds.shape == (1, 77, 32)
    assert torch.equal(ours.prompt_embeds, theirs)
    assert torch.equal(ours.negative_prompt_embeds, theirs_negative)
    assert set(ours.kwargs()) == {"prompt_embeds", "negative_prompt_embeds"}


def test_sdxl_encoding_matches_diffusers_for_a_short_prompt(xl_pipe) -> None:
    import torch

    from engine.prompts import encode_prompts

    ours = encode_prompts(xl_pipe, "a red cat", "blurry")
    pos, neg, pooled, neg_pooled = xl_pipe.encode_prompt(
        "a red cat", device="cpu", negative_prompt="blurry"
    )
    assert ours.prompt_embeds.shape == (1, 77, 64)  # both encoders side by side
    for mine, theirs in zip(ours.kwargs().values(), (pos, neg, pooled, neg_pooled), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_sdxl_empty_negative_is_zeros_like_diffusers(xl_pipe) -> None:
    import torch

    from engine.prompts import encode_prompts

    embeds = encode_prompts(xl_pipe, "a red cat")
    assert torch.count_nonzero(embeds.negative_prompt_embeds) == 0
    assert torch.count_nonzero(embeds.negative_pooled_prompt_embeds) == 0


def test_long_prompt_is_not_truncated_and_negative_is_padded(sd_pipe, xl_pipe) -> None:
    from engine.prompts import encode_prompts, token_count

    words = [w for w in _words() if " " not in w][:150]
    prompt = " ".join(words)
    assert token_count(sd_pipe.tokenizer, prompt) == 150
    for pipe, dim in ((sd_pipe, 32), (xl_pipe, 64)):
        embeds = encode_prompts(pipe, prompt, "blurry")
        assert embeds.prompt_embeds.shape == (1, 2 * 77, dim)
        assert embeds.negative_prompt_embeds.shape == embeds.prompt_embeds.shape
        # ... and the other way round: a long negative pads the prompt
        flipped = encode_prompts(pipe, "a cat", prompt)
        assert flipped.prompt_embeds.shape == (1, 2 * 77, dim)


def test_weights_change_the_embedding_but_keep_its_mean(sd_pipe) -> None:
    import torch

    from engine.prompts import encode_prompts

    plain = encode_prompts(sd_pipe, "a red cat").prompt_embeds
    weighted = encode_prompts(sd_pipe, "a (red:1.5) cat").prompt_embeds
    assert not torch.equal(plain, weighted)
    assert torch.allclose(plain.mean(), weighted.mean(), atol=1e-6)
    # only the weighted token's position changes direction; the rest is rescaled
    assert encode_prompts(sd_pipe, "a (red:1) cat").prompt_embeds.equal(plain)


def _words() -> list[str]:
    from engine.tiny import WORDS_FILE

    lines = WORDS_FILE.read_text().splitlines()
    return [w for w in lines if w and not w.startswith("#")]
