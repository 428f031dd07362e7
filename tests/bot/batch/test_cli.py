"""``proofroom batch``: the lesson's 50 SKUs x 3 variations on ``tiny``, and bad files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import REPO_ROOT


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PROOFROOM_DATA_DIR": str(tmp_path / "data"),
        "PROOFROOM_KEY_PREFIX": f"batchcli-{tmp_path.name}",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("REDIS_URL", None)  # the embedded default: no server needed
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "batch", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_fifty_skus_times_three_variations(tmp_path: Path) -> None:
    products = tmp_path / "products.csv"
    with products.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_name", "style", "lighting"])  # the lesson's own header
        for k in range(50):
            writer.writerow(
                [f"Widget {k}", ("minimalist", "industrial", "luxury")[k % 3], "studio"]
            )
    out = tmp_path / "out"
    done = run_cli(tmp_path, str(products), "--template", "product-photo", "--variations", "3",
                   "--seed", "100", "--steps", "2", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "150 images and manifest.csv" in done.stdout
    # A command prints its progress and result: no INFO logs, no harmless library warnings.
    assert " INFO " not in done.stderr and "torchvision" not in done.stderr, done.stderr[-3000:]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 150
    with (out / "manifest.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 150
    assert sorted(r["file"] for r in rows) == pngs
    assert [(r["row"], r["variation"], r["seed"]) for r in rows[:4]] == [
        ("2", "1", "100"), ("2", "2", "101"), ("2", "3", "102"), ("3", "1", "103"),
    ]  # fmt: skip
    assert rows[-1]["row"] == "51" and "Widget 49" in rows[-1]["prompt"]
    assert {r["state"] for r in rows} == {"rendered"}


def test_a_bad_file_is_reported_whole_and_nothing_renders(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("product,colour,seed\n,red,1\nMug,blue,x\n")
    done = run_cli(tmp_path, str(bad), "--template", "product-photo", "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "the batch file has 3 problems; nothing was queued" in done.stderr
    assert "row 3: seed `x` is not a whole number" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_huge_cell_is_a_listed_problem_not_a_traceback(tmp_path: Path) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text("name,clothing\nAda," + "x" * 200_000 + "\n")
    done = run_cli(tmp_path, str(wide), "--template", "character", "--out", str(tmp_path / "o"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "the batch file has 1 problem; nothing was queued" in done.stderr
    assert "row 2: a cell is longer than 131,072 characters" in done.stderr
    assert "Traceback" not in done.stderr
