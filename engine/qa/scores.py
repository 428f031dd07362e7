"""Cheap image scores (numpy and OpenCV, a few milliseconds per image on a CPU).

Every score is computed on the grayscale image scaled down to fit :data:`ANALYSIS_SIDE`
(area interpolation), so a threshold means the same at 512x512 and at 1536x1536. An image
smaller than that is scored at its own size: scaling it up would smooth it and make every
small render look soft.

- ``sharpness``: variance of the Laplacian (ksize 1) on 0-255 grayscale. Blur removes the
  high frequencies the Laplacian responds to, so a soft image scores low.
- ``brightness``: mean luminance, 0-255 (too dark, too bright).
- ``contrast``: standard deviation of the luminance, 0-255 (flat; near 0: one colour,
  blank, as the all-black output of a safety checker).
- ``phash``: a 64-bit perceptual hash (DCT of a 32x32 grayscale, the 8x8 lowest
  frequencies against their median); near-duplicates are a few bits apart
  (:func:`hamming`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

ANALYSIS_SIDE = 512
_HASH_SIDE = 32
_HASH_BITS = 8


@dataclass(frozen=True)
class Scores:
    """The scores of one image (see the module docstring for what each measures)."""

    sharpness: float
    brightness: float
    contrast: float
    phash: int

    def as_dict(self) -> dict[str, float | str]:
        """JSON-ready: numbers rounded, the hash as 16 hex digits."""
        return {
            "sharpness": round(self.sharpness, 1),
            "brightness": round(self.brightness, 1),
            "contrast": round(self.contrast, 1),
            "phash": f"{self.phash:016x}",
        }


def grayscale(image: Any) -> np.ndarray:
    """``image`` (PIL, or an RGB/RGBA/gray uint8 array) as 0-255 float32 grayscale, scaled
    down to fit :data:`ANALYSIS_SIDE`."""
    if hasattr(image, "convert"):  # PIL; convert("RGB") would copy an RGB image (slow)
        image = image if image.mode in ("RGB", "L") else image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 3:
        array = cv2.cvtColor(np.ascontiguousarray(array[..., :3]), cv2.COLOR_RGB2GRAY)
    height, width = array.shape[:2]
    scale = ANALYSIS_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return array.astype(np.float32)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian of ``gray``."""
    return float(cv2.Laplacian(gray, cv2.CV_32F, ksize=1).var())


def exposure(gray: np.ndarray) -> tuple[float, float]:
    """``(brightness, contrast)``: mean and standard deviation of ``gray``."""
    mean, std = cv2.meanStdDev(gray)
    return float(mean[0][0]), float(std[0][0])


def phash(gray: np.ndarray) -> int:
    """The 64-bit perceptual hash of ``gray``."""
    small = cv2.resize(gray, (_HASH_SIDE, _HASH_SIDE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:_HASH_BITS, :_HASH_BITS].flatten()
    # The DC term (the mean) says nothing about the picture's shapes: left out of the median.
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(first: int, second: int) -> int:
    """How many bits two hashes differ in."""
    return (first ^ second).bit_count()


def score(image: Any) -> Scores:
    """All the scores of ``image``."""
    gray = grayscale(image)
    brightness, contrast = exposure(gray)
    return Scores(
        sharpness=sharpness(gray), brightness=brightness, contrast=contrast, phash=phash(gray)
    )
