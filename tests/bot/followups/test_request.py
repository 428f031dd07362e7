"""Reading ``/imagine vary JOB#K [--strong] [--n 4]`` and ``/imagine upscale JOB#K
[--scale 2|4]`` (pure)."""

from __future__ import annotations

import pytest

from bot.followups.request import (
    DEFAULT_SCALE,
    DEFAULT_VARIATIONS,
    FollowupRequest,
    FollowupUsage,
    is_followup,
    parse_followup,
)


def parse(text: str, *, max_count: int = 8) -> FollowupRequest:
    return parse_followup(text.split(), max_count=max_count)


def test_vary_with_the_defaults() -> None:
    request = parse("vary 3f2a9c1b07de#2")
    assert request == FollowupRequest(kind="vary", job_id="3f2a9c1b07de", number=2)
    assert (request.count, request.strong, request.preset) == (DEFAULT_VARIATIONS, False, "subtle")


def test_vary_strong_with_a_count_in_either_spelling() -> None:
    assert parse("vary abc#1 --strong --n 3") == FollowupRequest(
        kind="vary", job_id="abc", number=1, strong=True, count=3
    )
    assert parse("VARY abc#1 --n=2 --STRONG").count == 2
    assert parse("vary abc#1 --strong --subtle").preset == "subtle"  # the last one wins


def test_upscale_takes_a_scale_with_or_without_x() -> None:
    assert parse("upscale abc#4").scale == DEFAULT_SCALE
    assert parse("upscale abc#4 --scale 4").scale == 4
    assert parse("upscale abc#4 --scale 4x").scale == 4
    assert parse("upscale abc").number is None  # the job's only image


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vary", "say which image"),
        ("vary --strong", "say which image"),
        ("vary abc#x", "does not name an image"),
        ("vary abc#0", "numbered from 1"),
        ("vary abc#1 --n 9", "from 1 to 8; you typed `9`"),
        ("vary abc#1 --n 0", "from 1 to 8"),
        ("vary abc#1 --n", "you typed `nothing`"),
        ("vary abc#1 --scale 2", "`--scale` is not an option of `/imagine vary`"),
        (
            "upscale abc#1 --scale 3",
            "an upscale is 2 or 4 times the image's size (--scale); you typed `3`",
        ),
        ("upscale abc#1 --scale", "you typed `nothing`"),
        ("upscale abc#1 --n 2", "an upscale makes one image"),
        ("upscale abc#1 --strong", "`--strong` is not an option of `/imagine upscale`"),
        ("upscale abc#1 please", "`please` is not an option"),
    ],
)
def test_usage_errors_say_what_to_type(text: str, expected: str) -> None:
    with pytest.raises(FollowupUsage) as caught:
        parse(text)
    assert expected in caught.value.message


def test_a_prompt_that_starts_with_the_word_is_not_a_followup() -> None:
    assert not is_followup(["upscale", "photo", "of", "a", "loft"])
    assert not is_followup(["vary", "the", "colours", "of", "a", "sunset"])
    assert not is_followup(["a", "vary", "abc#2"])
    assert is_followup(["vary"])
    assert is_followup(["vary", "--strong"])
    assert is_followup(["upscale", "abc#2"])
    assert is_followup(["Upscale", "3f2a9c1b07de"])  # a job id alone
