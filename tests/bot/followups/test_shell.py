"""``:react N vary`` and ``:react N upscale`` in the terminal channel, on the test's Redis
with the shell's own worker thread on ``tiny``."""

from __future__ import annotations

import io

from bot.adapters.shell.cli import SHELL_HELP, Shell
from bot.settings import BotSettings


def test_react_vary_and_upscale_in_the_shell(settings, redis, tmp_path):
    out = io.StringIO()
    bot_settings = BotSettings(_env_file=None, export_dir=tmp_path / "approved")  # type: ignore[call-arg]
    script = [
        "/imagine a lighthouse --n 1 --seed 11",
        ":wait",
        ":react 1 vary",
        ":wait",
        ":react 1 upscale",
        ":wait",
        ":react 1 sideways",
    ]
    with Shell(
        settings=settings, user="you", echo=True, out=out, bot_settings=bot_settings
    ) as shell:
        status = shell.run_lines(script)
    text = out.getvalue()
    assert status == 1, "the unknown reaction is reported"
    assert "\U0001f500 Variations of image 1 (subtle) for @you" in text
    for k in range(1, 5):
        assert f"] Variation {k}/4 of image 1 \u00b7 seed" in text
    assert "\u2b06\ufe0f Upscaling image 1 2x to 128x128" in text
    assert "] Image 1 upscaled 2x \u00b7 seed 11" in text
    assert "`sideways` is not a vote" in text and "vary, upscale" in text


def test_the_shell_help_names_the_new_reactions():
    assert "vary" in SHELL_HELP and "upscale" in SHELL_HELP
