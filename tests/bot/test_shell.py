"""The terminal channel: a scripted session in-process on the test's Redis, and
``make demo`` (``python -m bot.demo``) end to end on the embedded default."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import BotSettings
from bot.shell import Shell
from engine.settings import REPO_ROOT


def test_a_scripted_shell_session_prints_the_thread_and_takes_votes(settings, redis, tmp_path):
    out = io.StringIO()
    bot_settings = BotSettings(_env_file=None, export_dir=tmp_path / "approved")
    script = [
        "# comments and blank lines are skipped",
        "",
        "/imagine quick-product product=lamp --n 2 --steps 2 --seed 11",
        ":wait",
        ":react 1 approve as ana",
        ":react #2 \u274c as ben",
        ":react 9 approve",
        ":exports",
    ]
    with Shell(
        settings=settings, user="you", echo=True, out=out, bot_settings=bot_settings
    ) as shell:
        status = shell.run_lines(script)
    text = out.getvalue()
    assert status == 1, "the reaction on a missing image #9 is reported"
    assert "@you asked for 2 images" in text
    assert "Rendering `" in text and "step 4/4" in text
    assert "[#1] Image 1/2 \u00b7 seed 11" in text and "[#2] Image 2/2 \u00b7 seed 12" in text
    assert "approved by @ana" in text and "rejected by @ben" in text
    assert "no image 9" in text
    exported = sorted(p.name for p in (tmp_path / "approved").iterdir())
    assert [n.rsplit(".", 1)[1] for n in exported] == ["json", "png"]
    assert f"exported: {tmp_path / 'approved' / exported[1]}" in text
    assert (settings.data_dir / "shell" / exported[1]).is_file()


@pytest.mark.slow
def test_make_demo_runs_a_session_and_prints_the_export(tmp_path: Path):
    env = {
        k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("PROOFROOM_")
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.demo", str(tmp_path / "demo")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    png = Path(
        next(line for line in lines if line.startswith("Approved image:")).split(": ", 1)[1].strip()
    )
    sidecar = Path(
        next(line for line in lines if line.startswith("Sidecar:")).split(":", 1)[1].strip()
    )
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads(sidecar.read_text())
    assert meta["approved_by"] == ["ana"]
    assert meta["template"] == "product-photo"
    assert meta["loras"] == [{"name": "tiny-style", "weight": 0.8}]
    assert "step 8/8" in done.stdout
