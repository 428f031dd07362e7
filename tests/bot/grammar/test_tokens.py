"""The word splitter on long, adversarial text (issue 12): it agrees with the original
algorithm, kept here as the reference, and every word it returns is a piece of the input.

Hypothesis's own text strategies stay short, so the long strings are built by repeating drawn
fragments (quotes, flags, typographic and invisible characters) up to 40,000 characters. The
original algorithm rescanned the rest of the text for every word opening with ``'``; at this
length it takes minutes. Speed itself is measured by ``bench/grammar.py``, not asserted here;
what is asserted is how the work grows: the calls made for a text four times as long.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.grammar.parse import BadCommand, ImagineRequest, MetaCommand, parse
from bot.grammar.tokens import Token, TokenizeError, tokenize
from engine.catalog import Catalog
from engine.settings import REPO_ROOT

CATALOG = Catalog.load(REPO_ROOT / "templates")
MAX_CHARS = 40_000
REFERENCE_CHARS = 2_000  # the quadratic reference is run on a prefix of this length
DOUBLE_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"'})
DASH_FLAG = re.compile(r"^[\u2014\u2013]-?(?=[A-Za-z])")

FRAGMENTS = st.sampled_from(
    [
        "'", '"', "'a ", "a'", "''", "' ", " '", "=", "=' ", '="', "key=", "key='", 'key="',
        "--", "--seed", "--seed 1 ", "--no ", "--lora ", "--lora=tiny-style:0.5 ", "—", "–",
        "—seed ", "\u201c", "\u201d", "\u201e", "\u2033", "\u2018", "\u2019", "a", "cat ",
        "dog's ", " ", "  ", "\n", "\t", "\u200b", "\u2060", "\ufeff", "\u3000", "\u00a0",
        "\U0001f600", "\u2705", "<lora:", "<lora:tiny-style:0.5>", ">", ":", "\\", "/imagine ",
        "product-photo ", "\x1b[2J", "\x00",
    ]
)  # fmt: skip


@st.composite
def long_texts(draw: st.DrawFn) -> str:
    """Runs of a drawn unit (a few fragments, maybe a short drawn text) repeated up to
    ``MAX_CHARS`` characters in all: the shapes that make a scan per word expensive."""
    runs = draw(st.lists(st.tuples(_units(), st.integers(1, MAX_CHARS)), min_size=1, max_size=4))
    text = ""
    for unit, times in runs:
        room = MAX_CHARS - len(text)
        text += unit * min(times, room // len(unit) + 1)
    return text[:MAX_CHARS]


def _units() -> st.SearchStrategy[str]:
    fragment = st.one_of(FRAGMENTS, st.text(min_size=1, max_size=4))
    return st.lists(fragment, min_size=1, max_size=6).map("".join)


def reference_tokenize(text: str) -> list[Token]:
    """``bot.grammar.tokens.tokenize`` as it was before issue 12 (quadratic): the oracle."""
    text = text.translate(DOUBLE_QUOTES)

    def closing_single_quote(start: int) -> int:
        i = text.find("'", start + 1)
        while i >= 0:
            if i + 1 == len(text) or text[i + 1].isspace():
                return i
            i = text.find("'", i + 1)
        return -1

    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, quoted = i, False
        parts: list[str] = []
        while i < n and not text[i].isspace():
            ch = text[i]
            opens = not parts or parts[-1].endswith("=")
            if ch == '"' and opens:
                end = text.find('"', i + 1)
                if end < 0:
                    raise TokenizeError(
                        f"a quote opened at `{text[i : i + 20].strip()}` is not closed; "
                        'add the closing ", e.g. product="leather handbag"'
                    )
                parts.append(text[i + 1 : end])
                quoted, i = True, end + 1
            elif ch == "'" and opens and (end := closing_single_quote(i)) > 0:
                parts.append(text[i + 1 : end])
                quoted, i = True, end + 1
            else:
                parts.append(ch)
                i += 1
        value = "".join(parts)
        if text[start] not in "'\"":
            value = DASH_FLAG.sub("--", value)
        tokens.append(Token(raw=text[start:i], value=value, quoted=quoted))
    return tokens


def outcome(split, text: str) -> list[Token] | str:
    """The tokens, or the error message for an open quote."""
    try:
        return split(text)
    except TokenizeError as exc:
        return f"TokenizeError: {exc}"


LONG = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@LONG
@given(long_texts())
def test_long_text_splits_like_the_reference_and_into_pieces_of_the_input(text):
    prefix = text[:REFERENCE_CHARS]
    assert outcome(tokenize, prefix) == outcome(reference_tokenize, prefix)
    try:
        tokens = tokenize(text)
    except TokenizeError as exc:
        assert "is not closed" in str(exc)
        return
    # The raw words are the input, in order, with only whitespace between them.
    typed = text.translate(DOUBLE_QUOTES)
    at = 0
    for token in tokens:
        found = typed.find(token.raw, at)
        assert found >= 0 and typed[at:found].strip() == ""
        assert token.raw and not token.raw[0].isspace()
        at = found + len(token.raw)
    assert typed[at:].strip() == ""


@LONG
@given(long_texts())
def test_long_text_parses_to_a_request_or_a_usage_error(text):
    # A prompt limit above the text's length, so that the whole grammar reads it.
    result = parse(text, catalog=CATALOG, max_prompt_chars=MAX_CHARS)
    assert isinstance(result, ImagineRequest | MetaCommand | BadCommand)
    if isinstance(result, BadCommand):
        assert result.message and isinstance(result.message, str)


def calls(split: Callable[[str], object], text: str) -> int:
    """How many Python and builtin functions ``split(text)`` calls: a count of the work
    done that, unlike a time, is the same on every machine and every run."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        count += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        split(text)
    except TokenizeError:
        pass
    finally:
        sys.setprofile(None)
    return count


def parse_all(text: str) -> object:
    return parse(text, catalog=CATALOG, max_prompt_chars=10 * len(text))


@pytest.mark.parametrize("split", [tokenize, parse_all], ids=["tokenize", "parse"])
@pytest.mark.parametrize(
    "unit", ["'a ", "x='y ", "--no 'a ", "--seed 'a ", "—' ", "' '", '"a" ', "<lora:", "a "]
)
def test_four_times_the_text_is_four_times_the_work(split, unit):
    # Linear work gives 4x; the original scan per quoted word gave 16x ("'a " from the issue).
    short, long = calls(split, unit * 500), calls(split, unit * 2000)
    assert long <= 4.5 * short, (short, long)


def test_the_issue_text_splits_into_its_words():
    text = "'a " * 33_000
    assert tokenize(text) == [Token(raw="'a", value="'a")] * 33_000


def test_quoted_words_still_close_at_the_next_quote_that_ends_a_word():
    assert [t.value for t in tokenize("'it's here' x 'a'b c' d'")] == [
        "it's here",
        "x",
        "a'b c",
        "d'",
    ]
