"""Scores against thresholds: the flags of an image.

A flag is a dict (JSON as it is stored with the image, in the PNG's ``proofroom`` chunk, the
artifact's metadata and the ``done`` event's image entry)::

    {"check": "sharpness", "score": 38.2, "threshold": 100.0,
     "reason": "soft focus: sharpness 38 < 100"}

``check`` is one of :data:`CHECKS`. A blank image gets only its ``blank`` flag: one colour
is also flat, unsharp and perhaps dark, and saying so four times helps nobody.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.qa.scores import Scores, hamming
from engine.settings import QaThresholds

CHECKS = ("blank", "sharpness", "dark", "bright", "flat", "duplicate", "nsfw")

Flag = dict[str, Any]


def flag(check: str, score: float, threshold: float, reason: str) -> Flag:
    """One flag (see the module docstring)."""
    return {"check": check, "score": round(score, 2), "threshold": threshold, "reason": reason}


def image_flags(scores: Scores, thresholds: QaThresholds) -> list[Flag]:
    """The flags of one image's own scores (no comparison with other images)."""
    t = thresholds
    if scores.contrast < t.blank_contrast:
        return [
            flag(
                "blank",
                scores.contrast,
                t.blank_contrast,
                f"blank image: one colour (contrast {scores.contrast:.1f} < {t.blank_contrast:g})",
            )
        ]
    flags = []
    if scores.sharpness < t.min_sharpness:
        flags.append(
            flag(
                "sharpness",
                scores.sharpness,
                t.min_sharpness,
                f"soft focus: sharpness {scores.sharpness:.0f} < {t.min_sharpness:g}",
            )
        )
    if scores.brightness < t.min_brightness:
        flags.append(
            flag(
                "dark",
                scores.brightness,
                t.min_brightness,
                f"too dark: brightness {scores.brightness:.0f} < {t.min_brightness:g}",
            )
        )
    if scores.brightness > t.max_brightness:
        flags.append(
            flag(
                "bright",
                scores.brightness,
                t.max_brightness,
                f"too bright: brightness {scores.brightness:.0f} > {t.max_brightness:g}",
            )
        )
    if scores.contrast < t.min_contrast:
        flags.append(
            flag(
                "flat",
                scores.contrast,
                t.min_contrast,
                f"flat: contrast {scores.contrast:.1f} < {t.min_contrast:g}",
            )
        )
    return flags


def duplicate_flag(
    phash: int, earlier: Sequence[tuple[int, int]], thresholds: QaThresholds
) -> Flag | None:
    """The flag of an image whose hash is within ``duplicate_distance`` bits of one of the
    ``earlier`` images of its job (``(index, phash)`` pairs), naming the closest; None when
    none is that close."""
    if thresholds.duplicate_distance < 0 or not earlier:
        return None
    distance, index = min((hamming(phash, other), index) for index, other in earlier)
    if distance > thresholds.duplicate_distance:
        return None
    return flag(
        "duplicate",
        distance,
        thresholds.duplicate_distance,
        f"near-duplicate of image {index + 1} "
        f"(distance {distance} <= {thresholds.duplicate_distance})",
    )


def nsfw_flag(score: float | None, thresholds: QaThresholds) -> Flag | None:
    """The flag of a classifier score at or above ``nsfw_threshold``; None without one."""
    if score is None or score < thresholds.nsfw_threshold:
        return None
    return flag(
        "nsfw",
        score,
        thresholds.nsfw_threshold,
        f"possibly NSFW: score {score:.2f} >= {thresholds.nsfw_threshold:g}",
    )


def reasons(flags: Sequence[Flag]) -> str:
    """The flags' reasons in one line ("" without flags)."""
    return "; ".join(str(f["reason"]) for f in flags)
