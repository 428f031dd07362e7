"""Control images for ControlNet jobs: the guide a ControlNet reads, made from the attached
image. No torch here.

Canny edges are computed here (OpenCV) from any photo, so a user can attach a product shot
and get its outline as the guide. Depth maps, OpenPose skeletons and scribbles need models
or a person to make; for those the attached image is taken as the prepared guide.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.spec import ControlType

# A1111 / ControlNet 1.1 defaults for the canny preprocessor.
CANNY_LOW = 100
CANNY_HIGH = 200
PREPROCESSED: tuple[ControlType, ...] = ("canny",)  # made here; the rest come prepared


def canny(image: Image.Image, *, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    """White edges on black, as an RGB image of ``image``'s size (what canny ControlNets
    were trained on)."""
    import cv2  # OpenCV: only needed by a worker rendering a canny job

    gray = np.asarray(image.convert("L"))
    edges = cv2.Canny(gray, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def control_image(image: Image.Image, *, control: ControlType) -> Image.Image:
    """The guide for a ``control`` ControlNet from an already fitted RGB ``image``."""
    if control in PREPROCESSED:
        return canny(image)
    return image.convert("RGB")  # depth, openpose, scribble: prepared by the user
