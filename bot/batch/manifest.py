"""Batch manifests: a CSV of every image and a zip of the approved ones.

The ``flags`` column holds what the worker's automated QA found (``engine.qa``: its
reasons, ``; ``-separated; empty when the image passed); :func:`unflagged` keeps only the
images that passed.

Spreadsheets execute cells that start with ``=``, ``+``, ``-``, ``@`` (and tab or
carriage return); prompts come from users, so every cell is neutralised before
it is written (OWASP's advice: prefix a single quote).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

MANIFEST_COLUMNS = ("row", "variation", "file", "seed", "prompt", "state", "job", "flags")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a batch as it appears in the manifest."""

    row: int
    variation: int
    file: str
    seed: int | None
    prompt: str
    state: str  # approved | rejected | pending | failed
    job: str
    flags: str = ""  # the QA's reasons, "; "-separated; "" when it passed


def neutralise(value: object) -> str:
    """A cell value a spreadsheet shows as text, never evaluates as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def unflagged(entries: Iterable[ManifestEntry]) -> list[ManifestEntry]:
    """The entries of images the QA did not flag (rows without an image are left out too:
    there is nothing in them to use)."""
    return [entry for entry in entries if entry.file and not entry.flags]


def manifest_csv(entries: Iterable[ManifestEntry]) -> bytes:
    """The manifest as UTF-8 CSV bytes (with BOM, so Excel reads the encoding right)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MANIFEST_COLUMNS)
    for entry in entries:
        writer.writerow([neutralise(getattr(entry, column)) for column in MANIFEST_COLUMNS])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def zip_parts(files: Iterable[tuple[str, bytes]], *, max_bytes: int) -> list[bytes]:
    """Zip ``(name, data)`` pairs into as few archives as fit under ``max_bytes`` each.

    PNGs barely compress, so sizes are estimated from the raw data plus a header
    allowance; a single file larger than the limit still gets an archive of its own.
    """
    parts: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for name, data in files:
        cost = len(data) + len(name) * 2 + 128
        if parts[-1] and size + cost > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append((name, data))
        size += cost
    archives = []
    for part in parts:
        if not part:
            continue
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in part:
                archive.writestr(name, data)
        archives.append(buffer.getvalue())
    return archives
