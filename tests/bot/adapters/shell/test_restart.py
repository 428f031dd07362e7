"""``proofroom shell`` across a restart: without ``REDIS_URL`` its state lives in the data
folder's private ``redis-server``, so an image left undecided keeps its number and can be
approved by the next session; without a ``redis-server`` nothing survives, and it says so."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.adapters.shell.adapter import ShellAdapter
from bot.adapters.shell.state import ShellState
from engine.private_redis import _alive, find_binary
from engine.settings import REPO_ROOT

MODEL_CACHE = REPO_ROOT / ".proofroom" / "models"
STATE_LINE = re.compile(
    r"\(state kept in (?P<folder>\S+) by a private redis-server, pid (?P<pid>\d+)"
)


def test_ids_and_image_numbers_go_on_across_sessions(redis, key_prefix, tmp_path):
    def session() -> tuple[ShellAdapter, io.StringIO]:
        out = io.StringIO()
        memory = ShellState(redis=redis, key_prefix=key_prefix, ttl_s=60)
        return ShellAdapter(out=out, image_dir=tmp_path, memory=memory), out

    first, _ = session()
    card = first.post(channel="shell", text="card")
    image = first.upload(
        channel="shell", thread=card.id, data=b"png", filename="a.png", text="img", votable=True
    )
    second, out = session()
    later = second.post(channel="shell", text="another card")
    again = second.upload(
        channel="shell", thread=later.id, data=b"png", filename="b.png", text="img", votable=True
    )

    assert [card.id, image.id, later.id, again.id] == ["s1", "s2", "s3", "s4"]
    assert "[#2] img" in out.getvalue(), "numbers go on"
    assert second.find("1") == image and second.find("#1") == image, "an earlier session's"
    assert second.find("s1") == card and second.find("2") == again
    assert second.find("3") is None and second.find("s9") is None and second.find("0") is None
    assert second.images == [again], "this session's images"


def shell(data_dir: Path, lines: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``proofroom shell`` as a real process on ``data_dir``, without ``REDIS_URL``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "PROOFROOM_REDIS_URL", "PROOFROOM_REDIS_SERVER")
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "shell", "--user", "ana", "--timeout", "120"],
        input="".join(f"{line}\n" for line in lines),
        cwd=data_dir.parent,  # no .env of the checkout
        env={
            **base,
            "PYTHONPATH": str(REPO_ROOT),
            "HF_HUB_OFFLINE": "1",
            "PROOFROOM_DATA_DIR": str(data_dir),
            "PROOFROOM_MODEL_CACHE_DIR": str(MODEL_CACHE),
            "PROOFROOM_TEMPLATES_DIR": str(REPO_ROOT / "templates"),
            "PROOFROOM_DEVICE": "cpu",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


@pytest.mark.slow
@pytest.mark.skipif(find_binary("redis-server") is None, reason="redis-server is not installed")
def test_an_image_left_pending_is_approved_after_the_shell_restarts(tmp_path: Path):
    data = tmp_path / "data"
    first = shell(data, ["/imagine a red mug --n 1 --steps 2 --seed 3", ":quit"])

    assert first.returncode == 0, first.stdout + first.stderr
    started = STATE_LINE.search(first.stdout)
    assert started, first.stdout
    assert Path(started["folder"]) == data / "redis"
    job = re.search(r"\[#1\] Image · seed 3 · job `(\w+)`", first.stdout)
    assert job, first.stdout
    assert not _alive(int(started["pid"])), "the private server stopped with the shell"
    assert not (data / "approved").exists()

    second = shell(data, [":react 1 approve", ":exports"])

    assert second.returncode == 0, second.stdout + second.stderr
    again = STATE_LINE.search(second.stdout)
    assert again and again["pid"] != started["pid"], second.stdout
    assert "1 image(s) from earlier sessions wait for a decision:" in second.stdout
    assert f"[#1] image 1/1 of job {job[1]} (seed 3); :react 1 approve" in second.stdout
    assert "approved by @ana" in second.stdout, second.stdout
    png = data / "approved" / f"{job[1]}-0-3.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.with_suffix(".json").is_file()
    assert f"exported: {png}" in second.stdout
    assert not _alive(int(again["pid"]))
    assert not list((data / "redis").glob("*.sock")), "no socket left behind"


@pytest.mark.slow
def test_without_a_redis_server_the_shell_says_in_one_line_that_nothing_survives(
    tmp_path: Path,
):
    # That nothing does follows from the in-memory store living in the process; a second
    # session to show it would cost another start of the worker thread (10 s) and no check.
    data = tmp_path / "data"
    first = shell(
        data, ["/imagine a red mug --n 1 --steps 2 --seed 3"], PROOFROOM_REDIS_SERVER="off"
    )

    assert first.returncode == 0, first.stdout + first.stderr
    assert "[#1] Image · seed 3" in first.stdout
    warnings = [line for line in first.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, first.stderr
    assert "PROOFROOM_REDIS_SERVER=off: state kept in memory, nothing" in warnings[0]
    assert "state kept in" not in first.stdout
    assert not (data / "redis").exists()
