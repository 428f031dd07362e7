"""The terminal channel: a scripted session in-process on the test's Redis, and
``make demo`` (``python -m bot.demo``) end to end on the embedded default."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.adapters.shell import cli as shell_cli
from bot.adapters.shell.adapter import ShellAdapter
from bot.adapters.shell.cli import Shell
from bot.settings import BotSettings
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
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    pngs = [Path(line.split(": ", 1)[1].strip()) for line in lines if line.startswith("Approved")]
    sidecars = [
        Path(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Sidecar:")
    ]
    assert len(pngs) == len(sidecars) == 2  # the approved image and its approved upscale
    assert all(p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    by_mode = {
        meta["params"]["mode"]: meta for meta in (json.loads(s.read_text()) for s in sidecars)
    }
    original, upscale = by_mode["txt2img"], by_mode["upscale"]
    assert original["approved_by"] == ["ana"]
    assert original["template"] == "product-photo"
    assert original["loras"] == [{"name": "tiny-style", "weight": 0.8}]
    assert upscale["approved_by"] == ["ben"]
    assert upscale["chain"]["parent"] == f"{original['job_id']}/0"
    assert (upscale["params"]["width"], upscale["params"]["height"]) == (128, 128)
    assert "step 8/8" in done.stdout


@pytest.fixture()
def quiet_shell(settings, redis, tmp_path) -> Iterator[tuple[Shell, io.StringIO]]:
    """A shell without a worker thread: jobs stay queued on the test's Redis."""
    out = io.StringIO()
    bot_settings = BotSettings(_env_file=None, export_dir=tmp_path / "approved")
    with Shell(
        settings=settings, user="you", worker=False, out=out, bot_settings=bot_settings
    ) as shell:
        yield shell, out


def test_a_superscript_or_other_odd_image_number_is_a_sentence_and_the_session_goes_on(
    quiet_shell,
):
    shell, out = quiet_shell
    lines = [
        ":react \u00b2 approve",
        ":react \u0663 approve",
        ":react #99999999999 reject",
        ":unreact \U0001d7da \u274c",
        ":help",
    ]
    assert shell.run_lines(lines) == 1
    text = out.getvalue()
    assert "no image \u00b2; try e.g. :react 1 approve" in text
    assert "no image \u0663" in text and "no image #99999999999" in text
    assert "no image \U0001d7da" in text
    assert ":exports" in text, "the session went on to :help"
    assert "went wrong" not in text


ODD_LINES = st.tuples(
    st.sampled_from([":react", ":unreact", ":user", ":exports", ":help", ":", "::", ":react 1"]),
    st.text(max_size=24),
).map(" ".join)


def test_no_shell_command_line_ends_the_session(quiet_shell):
    shell, out = quiet_shell

    @hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(ODD_LINES, st.text(max_size=24).map(":".__add__)))
    def run_one(line):
        assert shell.run_lines([line]) in (0, 1)

    run_one()
    assert "went wrong" not in out.getvalue()


def test_a_line_that_fails_on_our_side_is_a_sentence_and_the_session_goes_on(
    quiet_shell, monkeypatch, caplog
):
    shell, out = quiet_shell

    def broken(token):
        raise RuntimeError("boom")

    monkeypatch.setattr(shell.adapter, "find", broken)
    assert shell.run_lines([":react 1 approve", ":user ana"]) == 1
    text = out.getvalue()
    assert "something went wrong on our side (reference " in text
    assert "(you are now ana)" in text
    assert "boom" in caplog.text


def test_control_characters_from_a_prompt_never_reach_the_terminal(quiet_shell):
    shell, out = quiet_shell
    shell.run_lines(
        ["/imagine a cat\x1b[2J\x1b[H on a \x1b]0;owned\x07mat\x9b31m \x07\x08\r --seed 4 --n 1"]
    )
    shell.adapter.say("tab\tand\nnewline stay; \x1bc reset and \x00 go")
    text = out.getvalue()
    assert "a cat on a mat31m" in text, text  # the job card quotes the prompt
    assert "tab\tand\nnewline stay;  reset and  go" in text
    assert not [ch for ch in text if ch not in "\n\t" and unicodedata.category(ch) == "Cc"]


def test_the_adapter_strips_controls_from_posts_edits_uploads_and_notices(tmp_path):
    out = io.StringIO()
    adapter = ShellAdapter(out=out, image_dir=tmp_path)
    ref = adapter.post(channel="c", text="card \x1b[31mred\x1b[0m")
    adapter.edit(message=ref, text="step 1/2 \x1b[1A\x1b[K")
    adapter.upload(
        channel="c",
        thread=ref.id,
        data=b"png",
        filename="x\x1b[2J.png",
        text="image \x1b]52;c;Y2xpcA==\x07",
        votable=True,
    )
    adapter.notify(channel="c", user="<@U1>\x1b[8m", text="hidden \x9b8m")
    text = out.getvalue()
    assert "card red" in text and "step 1/2" in text and "[#1] image" in text
    assert "\x1b" not in text and "\x9b" not in text and "Y2xpcA" not in text


def test_no_worker_without_redis_url_is_refused_before_anything_starts(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("REDIS_URL", "PROOFROOM_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    script = tmp_path / "session.txt"
    script.write_text("/imagine a red mug\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    shell_cli.add_arguments(parser)
    assert shell_cli.run(parser.parse_args(["--no-worker", "--script", str(script)])) == 2
    err = capsys.readouterr().err
    assert "--no-worker needs REDIS_URL" in err
    assert "drop --no-worker" in err and "set REDIS_URL" in err
    assert not (tmp_path / "data").exists(), "nothing started"
