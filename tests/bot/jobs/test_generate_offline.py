"""``proofroom generate`` with a catalog model whose weights are not on this machine and no
Hub (issue 12, item 7a): one ``error:`` line that says how to get the model, exit code 2,
no traceback. Run as a real process, with an empty Hugging Face home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_a_model_not_downloaded_is_one_error_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),  # empty: nothing was ever downloaded here
        "HF_HUB_OFFLINE": "1",
        "PROOFROOM_DATA_DIR": str(tmp_path / "data"),
        "PROOFROOM_MODEL_CACHE_DIR": str(REPO_ROOT / ".proofroom" / "models"),
        "PROOFROOM_TEMPLATES_DIR": str(REPO_ROOT / "templates"),
        "PROOFROOM_DEVICE": "cpu",
        "PYTHONPATH": str(REPO_ROOT),
    }
    command = [sys.executable, "-m", "bot.cli", "generate", "--prompt", "x", "--model", "sd-turbo"]

    done = subprocess.run(
        [*command, "-o", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: model `sd-turbo` is not downloaded on this worker")
    assert "`hf download stabilityai/sd-turbo`" in errors[0]
    assert not (tmp_path / "hf" / "hub").exists() or not any((tmp_path / "hf" / "hub").iterdir())
    assert list((tmp_path / "out").glob("*.png")) == []
