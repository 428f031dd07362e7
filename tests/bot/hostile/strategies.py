"""Hypothesis settings and strategies of the hostile-input suite.

Fast and the same on every run: examples are derived from the test (``derandomize``), no
example database is written into the repository, no deadline (two shared cores). Pure
functions get more examples than properties that write files or go through Redis."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_COMMON = dict(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PURE = settings(max_examples=150, **_COMMON)  # type: ignore[arg-type]
FILES = settings(max_examples=60, **_COMMON)  # type: ignore[arg-type]  # writes a file each
REDIS = settings(max_examples=40, **_COMMON)  # type: ignore[arg-type]

# Words that mean something to the grammar, hostile or not: flags with and without values,
# names that look like paths, template variables, quotes, LoRA tags, control characters.
COMMAND_WORDS = st.sampled_from(
    [
        "--seed", "--n", "--ar", "--no", "--lora", "--sampler", "--model", "--cfg", "--steps",
        "--size", "--strength", "--mask", "--control", "--control-scale", "--variations",
        "12", "-3", "0", "99999999999", "nan", "inf", "1e9", "3:2", "0:0", "64x64", "9x99999",
        "poster", "product=mug", 'product="a b"', "style='x y'", "product_name=lamp", "=",
        "tiny", "tiny-style", "tiny-style:0.5", "tiny-style:99", "../../x", "/root/x",
        "..\\..\\x", "/etc/passwd", "~/.ssh/id_rsa", "x\x00y", "file:///etc/passwd",
        "<lora:tiny-style:0.5>", "<lora:../../x:1>", "<lora:/root/x>", "<lora:", "(a:1.2.3)",
        "[[[", "BREAK", '"', "'", "\u201c", "\u2014seed", "<!channel>", "@here", "{product}",
        "%s", "{0}", "help", "status", "cancel", "repost", "usage", "templates", "reload",
        "/imagine", "\n", "\t", "\u200b", "\ufeff", "\u202e", "batch", "calendar", "digest",
        "vary", "upscale", "1#2", "abc#0", "retry", "unflagged",
    ]
)  # fmt: skip
COMMANDS = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(COMMAND_WORDS, st.text(max_size=6)), max_size=10).map(" ".join),
)
