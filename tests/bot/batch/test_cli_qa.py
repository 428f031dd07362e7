"""``proofroom batch`` and the worker's QA: the manifest's ``flags`` column, and
``--unflagged`` keeping only the images that passed. Every image after the first of a job
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
@pytest.mark.parametrize("unflagged", [False, True])
def test_the_manifest_lists_flags_and_can_be_filtered_to_unflagged_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unflagged: bool
) -> None:
    monkeypatch.setenv("PROOFROOM_QA__DUPLICATE_DISTANCE", "64")
    out = tmp_path / "out"
    args = [str(products(tmp_path)), "--template", "product-photo", "--variations", "2",
            "--seed", "100", "--steps", "2", "--out", str(out)]  # fmt: skip
    done = run_cli(tmp_path, *args, *(["--unflagged"] if unflagged else []))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = manifest(out)
    pngs = sorted(p.name for p in out.glob("*.png"))
    if unflagged:
        assert "3 images and manifest.csv" in done.stdout
        assert "3 flagged by QA left out" in done.stdout
        assert [r["variation"] for r in rows] == ["1", "1", "1"]
        assert all(r["flags"] == "" for r in rows)
    else:
        assert "6 images and manifest.csv" in done.stdout and "3 flagged by QA" in done.stdout
        assert [r["variation"] for r in rows] == ["1", "2"] * 3
        assert [r["flags"] for r in rows[:2]] == [
            "",
            "near-duplicate of image 1 (distance "
            + rows[1]["flags"].split("distance ")[1].split(" ")[0]
            + " <= 64)",
        ]
        assert all(r["flags"].startswith("near-duplicate of image 1") for r in rows[1::2])
    assert sorted(r["file"] for r in rows) == pngs
