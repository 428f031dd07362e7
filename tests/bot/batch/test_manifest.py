"""Manifest CSV cells cannot run as spreadsheet formulas; zips split under a size limit."""

from __future__ import annotations

import csv
import io
import zipfile

from bot.batch.manifest import ManifestEntry, manifest_csv, neutralise, zip_parts


def test_formula_cells_are_escaped() -> None:
    entry = ManifestEntry(
        row=2,
        variation=1,
        file="a.png",
        seed=5,
        prompt='=HYPERLINK("x")',
        state="approved",
        job="j",
    )
    text = manifest_csv([entry]).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["row", "variation", "file", "seed", "prompt", "state", "job", "flags"]
    assert rows[1][4] == '\'=HYPERLINK("x")'
    assert rows[1][:4] == ["2", "1", "a.png", "5"]


def test_every_dangerous_start_is_neutralised_and_plain_text_is_kept() -> None:
    for value in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(value) == "'" + value
    assert neutralise("red mug, -50% off") == "red mug, -50% off"
    assert neutralise(None) == ""


def test_zip_parts_split_under_the_limit_and_keep_every_file() -> None:
    files = [(f"img{i}.png", bytes([i]) * 4000) for i in range(10)]
    parts = zip_parts(files, max_bytes=10_000)
    assert len(parts) == 5
    names = [n for p in parts for n in zipfile.ZipFile(io.BytesIO(p)).namelist()]
    assert names == [f"img{i}.png" for i in range(10)]
    assert zip_parts([], max_bytes=10) == []
