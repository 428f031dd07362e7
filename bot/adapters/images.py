"""Fit an image under a chat platform's upload limit (pure Pillow).

The original stays in the artifact store with its metadata; only the copy shown in chat
is re-encoded. Quality goes down first (the image keeps its size, which is what people
review), then the image is downscaled.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image

# Tried in order; at each scale every quality step is tried before shrinking further.
QUALITIES = (92, 85, 75, 60, 45)
SCALES = (1.0, 0.75, 0.5, 0.35, 0.25, 0.125)
# JPEG first: every client previews it; WebP is smaller at the same quality.
FORMATS = (("JPEG", "jpg"), ("WEBP", "webp"))


@dataclass(frozen=True)
class FittedImage:
    """The bytes to upload; ``note`` says what was changed, ``None`` when nothing was."""

    data: bytes
    filename: str
    note: str | None = None


def fit_upload(data: bytes, *, filename: str, limit: int) -> FittedImage:
    """``data`` as is when it fits ``limit`` bytes, else the best re-encoding that fits.

    Raises ``ValueError`` when not even the smallest step fits (a limit of a few
    kilobytes); the caller decides how to tell the user.
    """
    if len(data) <= limit:
        return FittedImage(data=data, filename=filename)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        source = image.convert("RGB")  # JPEG has no alpha; review images have none anyway
    stem = PurePath(filename).stem
    for scale in SCALES:
        scaled = source if scale == 1.0 else _scaled(source, scale)
        for quality in QUALITIES:
            for fmt, ext in FORMATS:
                buffer = io.BytesIO()
                scaled.save(buffer, format=fmt, quality=quality)
                if buffer.tell() <= limit:
                    size = f"{scaled.width}x{scaled.height}, " if scale != 1.0 else ""
                    return FittedImage(
                        data=buffer.getvalue(),
                        filename=f"{stem}.{ext}",
                        note=f"preview re-encoded ({size}{fmt} q{quality}) to fit the "
                        f"{_megabytes(limit)} upload limit; the original is kept",
                    )
    raise ValueError(f"{filename} cannot be made smaller than {limit} bytes")


def _scaled(image: Image.Image, scale: float) -> Image.Image:
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{size / 1024:.0f} KB"
