"""Input image hygiene (``engine.inputs``), pure Pillow: decoding under a pixel limit, EXIF
orientation, RGB, fitting to the job's size, masks, the inpainting overlay, canny guides."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from engine.control import canny, control_image
from engine.inputs import Fit, InputImageError, decode, fit, overlay, prepare, to_mask
from tests.bot.adapters.discord.images import png_bomb

LIMIT = 4096 * 4096


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def fitted(*, width: int = 64, height: int = 64, how: Fit = "crop", **images: bytes):
    """``prepare`` with the inputs as keywords (``init=``, ``mask=``, ``control=``)."""
    return prepare(images=images, width=width, height=height, how=how, max_pixels=LIMIT)


def two_tone(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue: where each half lands shows crops and rotations."""
    image = Image.new("RGB", size, (220, 30, 30))
    image.paste((30, 30, 220), (size[0] // 2, 0, size[0], size[1]))
    return image


def test_exif_orientation_is_applied_before_fitting() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": how phones store portraits
    data = encode(two_tone((96, 64)), "JPEG", exif=exif, quality=95)
    prepared = fitted(init=data, width=64, height=96)
    assert prepared.init is not None and prepared.init.size == (64, 96)
    pixels = np.asarray(prepared.init, dtype=int)
    # Turned upright, the red half is on top: no crop was needed (same aspect).
    assert pixels[10, 32, 0] > 150 and pixels[86, 32, 2] > 150


def test_crop_covers_and_pad_letterboxes() -> None:
    wide = two_tone((128, 64))
    cropped = np.asarray(fit(wide, width=64, height=64, how="crop"), dtype=int)
    padded = np.asarray(fit(wide, width=64, height=64, how="pad"), dtype=int)
    # crop: the middle 64 columns of the scaled image, both halves still there
    assert cropped[32, 5, 0] > 150 and cropped[32, 58, 2] > 150
    # pad: the whole image at 64x32 between black bars
    assert padded[5, 32].sum() == 0 and padded[60, 32].sum() == 0
    assert padded[32, 5, 0] > 150 and padded[32, 58, 2] > 150


def test_transparency_goes_white_and_everything_becomes_rgb() -> None:
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((10, 200, 10, 255), (0, 0, 32, 64))
    prepared = fitted(control=encode(image))
    assert prepared.control is not None and prepared.control.mode == "RGB"
    assert tuple(np.asarray(prepared.control)[32, 48]) == (255, 255, 255)
    grey = fitted(init=encode(Image.new("L", (64, 64), 90)))
    assert grey.init is not None and grey.init.mode == "RGB"


def test_masks_are_binary_and_fitted_like_their_image() -> None:
    mask = Image.new("L", (128, 64), 0)
    ImageDraw.Draw(mask).rectangle((40, 16, 88, 48), fill=200)  # light grey counts as white
    mask = mask.resize((128, 64), Image.Resampling.BILINEAR)
    prepared = fitted(init=encode(two_tone((128, 64))), mask=encode(mask))
    assert prepared.mask is not None and prepared.mask.mode == "L"
    values = set(np.unique(np.asarray(prepared.mask)).tolist())
    assert values == {0, 255}
    # the crop kept the middle: the white rectangle is centred in the 64x64 mask
    assert np.asarray(prepared.mask)[32, 32] == 255 and np.asarray(prepared.mask)[32, 2] == 0
    # a transparent layer with white strokes works as a mask too
    strokes = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    strokes.putpixel((1, 1), (255, 255, 255, 255))
    assert np.asarray(to_mask(strokes)).sum() == 255


def test_refusals_are_sentences() -> None:
    with pytest.raises(InputImageError, match="the mask is all black, so nothing would change"):
        fitted(init=encode(two_tone((64, 64))), mask=encode(Image.new("L", (64, 64))))
    with pytest.raises(InputImageError, match=r"the mask is 64x64 but the init image is 128x64"):
        fitted(init=encode(two_tone((128, 64))), mask=encode(Image.new("L", (64, 64), 255)))
    with pytest.raises(InputImageError, match=r"the init image is 10000x10000 \(100,000,000"):
        fitted(init=png_bomb(10_000, 10_000))
    with pytest.raises(InputImageError, match="`x.gif` is not an image Proofroom can read"):
        decode(encode(two_tone((8, 8)), "GIF"), label="`x.gif`", max_pixels=LIMIT)


def test_overlay_keeps_every_pixel_outside_the_mask() -> None:
    original = two_tone((64, 64))
    generated = Image.new("RGB", (64, 64), (0, 255, 0))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    result = np.asarray(overlay(original, generated, mask, blur=4), dtype=int)
    outside = np.asarray(mask) == 0
    assert np.array_equal(result[outside], np.asarray(original, dtype=int)[outside])
    assert tuple(result[32, 32]) == (0, 255, 0)  # the middle of the mask is all generated
    edge = result[32, 16]  # the seam blends, inside the mask
    assert 0 < edge[1] < 255


def test_canny_guide_is_white_edges_on_black() -> None:
    image = Image.new("RGB", (64, 64))
    ImageDraw.Draw(image).rectangle((16, 16, 48, 48), fill=(255, 255, 255))
    edges = np.asarray(canny(image))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges).tolist()) == {0, 255}
    assert edges[32, 32].sum() == 0 and edges[14:19, 32].sum() > 0  # outline, not the fill
    depth = Image.new("RGB", (64, 64), (120, 120, 120))
    assert control_image(depth, control="depth") is not None  # taken as the prepared guide
    assert np.array_equal(np.asarray(control_image(depth, control="depth")), np.asarray(depth))
