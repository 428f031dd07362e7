"""``proofroom batch`` and the worker's QA: ``--unflagged`` keeps only the images that
passed. Every image after the first of a job
is made a near-duplicate by allowing any hash distance (64 bits)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.bot.batch.test_cli import run_cli


def products(tmp_path: Path) -> Path:
    path = tmp_path / "products.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product_name", "style", "lighting"])
        for k in range(3):
            writer.writerow([f"Widget {k}", "minimalist", "studio"])
    return path


def manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_the_manifest_can_be_filtered_to_unflagged_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The `flags` column's content is the chat manifest's too (tests/bot/qa/test_chat_qa.py):
    # one run of the command, filtered, is enough here.
    monkeypatch.setenv("PROOFROOM_QA__DUPLICATE_DISTANCE", "64")
    out = tmp_path / "out"
    args = [str(products(tmp_path)), "--template", "product-photo", "--variations", "2",
            "--seed", "100", "--steps", "2", "--out", str(out), "--unflagged"]  # fmt: skip
    done = run_cli(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = manifest(out)
    assert "3 images and manifest.csv" in done.stdout
    assert "3 flagged by QA left out" in done.stdout
    assert [r["variation"] for r in rows] == ["1", "1", "1"]
    assert all(r["flags"] == "" for r in rows)
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in out.glob("*.png"))
