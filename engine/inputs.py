"""Input image hygiene: the one place attached images (init image, mask, control image)
are decoded and shaped for a job. Pure Pillow, no torch: the bot checks attachments with
the same functions before anything is queued, and the worker prepares them before rendering.

- decode under a pixel limit, reading the header first, so a decompression bomb (a small
  file that decodes to gigabytes) is refused before any pixel is decoded;
- apply the EXIF orientation (phones store portraits sideways plus a rotation tag);
- convert to RGB (transparency over white) or, for masks, to a binary black/white image;
- fit to the job's size keeping the aspect: ``crop`` (cover, then cut the overflow) or
  ``pad`` (fit whole, letterboxed), a setting.

Every refusal is an :class:`InputImageError` with a sentence the user can act on. ``label``
names the image in those sentences (the bot passes ```photo.png```, the worker "the mask").
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from engine.errors import UserError
from engine.settings import Fit

# Formats a diffusion pipeline can take as an init image, mask or control image.
FORMATS = ("PNG", "JPEG", "WEBP")
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
PAD_COLOR = (0, 0, 0)  # letterbox bars; black in a mask means "keep"
MASK_THRESHOLD = 128
ASPECT_TOLERANCE = 0.02  # a mask may differ from its image by rounding, not by shape
ROLES = ("init", "mask", "control")  # in this order: the mask is matched to the init image
_WIDE_GRAY = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # integer grayscale over 8 bits


class InputImageError(UserError):
    """An input image was refused: not an image, too many pixels, corrupt, or unusable."""

    kind = "invalid_attachment"


@dataclass(frozen=True)
class PreparedInputs:
    """A job's input images at the job's size: RGB images and an ``L`` mask of 0/255."""

    init: Image.Image | None = None
    mask: Image.Image | None = None
    control: Image.Image | None = None


def open_header(data: bytes, *, label: str, max_pixels: int) -> Image.Image:
    """``data`` opened but not decoded: its format (PNG, JPEG or WebP) and size are read
    from the header, and it is refused over ``max_pixels`` before any pixel is decoded (a
    decompression bomb stays a few kilobytes). :class:`InputImageError` otherwise."""
    not_image = InputImageError(
        f"{label} is not an image Proofroom can read; attach a PNG, JPEG or WebP file."
    )
    try:
        # Opening reads the header only: the size is known before any pixel is decoded.
        # Pillow's own warning is silenced because our (lower) limit is checked next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        # Over twice Pillow's own limit (about 179 million pixels): refused at the header.
        raise too_many_pixels(label, None, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise not_image from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise too_many_pixels(label, (width, height), max_pixels)
    return image


def decode(data: bytes, *, label: str, max_pixels: int) -> Image.Image:
    """Fully decoded image of ``data`` (checked as by :func:`open_header`), EXIF orientation
    not yet applied; :class:`InputImageError` for a truncated or corrupt file too."""
    image = open_header(data, label=label, max_pixels=max_pixels)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError):
        image.close()
        raise InputImageError(
            f"{label} could not be decoded (truncated or corrupt); "
            "export it again and attach the new file."
        ) from None
    return image


def unfitted(data: bytes, *, label: str, max_pixels: int) -> Image.Image:
    """``data`` decoded with the checks of :func:`decode`, turned upright and in RGB, at its
    own size: an upscale's source, which the upscale itself enlarges (``engine.upscale``)."""
    with decode(data, label=label, max_pixels=max_pixels) as raw:
        return to_rgb(upright(raw))


def same_shape(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two sizes have one aspect ratio, within rounding (:data:`ASPECT_TOLERANCE`)."""
    return abs((size[0] / size[1]) / (other[0] / other[1]) - 1) <= ASPECT_TOLERANCE


def too_many_pixels(label: str, size: tuple[int, int] | None, max_pixels: int) -> InputImageError:
    """The refusal of an image over ``max_pixels`` (``size`` None: not even read)."""
    side = int(max_pixels**0.5)
    shown = f"{size[0]}x{size[1]} ({size[0] * size[1]:,} pixels)" if size else "far too large"
    return InputImageError(
        f"{label} is {shown}; the limit is {max_pixels:,} pixels "
        f"(for example {side}x{side}). Downscale it and attach it again."
    )


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned the way its EXIF orientation tag says it is seen."""
    return ImageOps.exif_transpose(image) or image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent areas become white (product cut-outs are shown on white)."""
    return _flatten(image, (255, 255, 255)).convert("RGB")


def to_mask(image: Image.Image) -> Image.Image:
    """An ``L`` image of exactly 0 (keep) and 255 (repaint). Transparent areas count as
    black, so white strokes painted on a transparent layer work as a mask."""
    return binarise(_flatten(image, (0, 0, 0)).convert("L"))


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``image`` over an RGB canvas of ``background`` when it has transparency; otherwise
    ``image`` itself, in its own mode (8 bits a channel)."""
    image = _eight_bit(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (``I;16``: PNGs from scanners and 16-bit exports) scaled to
    ``L``. Pillow's own conversion clips every value over 255 to white, so a mid-grey
    photo became a white picture and any 16-bit mask repainted everything."""
    if image.mode not in _WIDE_GRAY:
        return image
    scaled = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    transparent = image.info.get("transparency")
    if isinstance(transparent, int):
        scaled.info["transparency"] = transparent // 256
    return scaled


def binarise(mask: Image.Image) -> Image.Image:
    """0/255 at :data:`MASK_THRESHOLD`: a mask is a decision per pixel, not a shade."""
    return mask.point(lambda v: 255 if v >= MASK_THRESHOLD else 0, mode="L")


def fit(image: Image.Image, *, width: int, height: int, how: Fit) -> Image.Image:
    """``image`` at ``width`` x ``height`` with its aspect kept: ``crop`` scales it to cover
    and cuts the centred overflow; ``pad`` scales it to fit and centres it on bars."""
    if image.size == (width, height):
        return image
    resample = Image.Resampling.LANCZOS
    if how == "crop":
        return ImageOps.fit(image, (width, height), method=resample, centering=(0.5, 0.5))
    fill: int | tuple[int, int, int] = 0 if image.mode == "L" else PAD_COLOR
    return ImageOps.pad(image, (width, height), method=resample, color=fill, centering=(0.5, 0.5))


def prepare(
    *,
    images: Mapping[str, bytes],
    width: int,
    height: int,
    how: Fit,
    max_pixels: int,
    labels: Mapping[str, str] | None = None,
) -> PreparedInputs:
    """Decode, orient and fit a job's inputs (``images`` by role: ``init``, ``mask``,
    ``control``) to ``width`` x ``height``.

    The mask is fitted exactly like the init image (same crop or bars), so its white
    area stays over the same part of the picture; it must have the image's shape.
    """
    unknown = set(images) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown input roles {sorted(unknown)}; expected {ROLES}")
    names = {"init": "the init image", "mask": "the mask", "control": "the control image"}
    names.update(labels or {})
    prepared: dict[str, Image.Image] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for role in ROLES:
        data = images.get(role)
        if data is None:
            continue
        with decode(data, label=names[role], max_pixels=max_pixels) as raw:
            image = upright(raw)
            shapes[role] = image.size
            image = to_mask(image) if role == "mask" else to_rgb(image)
        if role == "mask" and "init" in shapes:
            image = _match(image, shapes["init"], names)
        fitted = fit(image, width=width, height=height, how=how)
        prepared[role] = binarise(fitted) if role == "mask" else fitted
    if "mask" in prepared and not prepared["mask"].getbbox():
        raise InputImageError(
            f"{names['mask']} is all black, so nothing would change; paint the area to "
            "repaint in white and attach it again."
        )
    return PreparedInputs(**prepared)


def overlay(
    original: Image.Image, generated: Image.Image, mask: Image.Image, *, blur: int
) -> Image.Image:
    """``generated`` inside ``mask`` and ``original`` everywhere else, as A1111 composites
    inpainting results (diffusers returns every pixel decoded, so the whole picture would
    drift by the VAE's round-trip error). The blur softens the seam inward only, so pixels
    outside the mask are the original's exactly."""
    soft = mask
    if blur > 0:
        soft = mask.filter(ImageFilter.GaussianBlur(blur))
        soft = Image.composite(soft, mask, mask)  # keep the blur inside the mask
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), soft)


def _match(mask: Image.Image, size: tuple[int, int], names: dict[str, str]) -> Image.Image:
    """The mask at the init image's size; a mask of another shape is refused."""
    if mask.size == size:
        return mask
    mask_ratio, image_ratio = mask.width / mask.height, size[0] / size[1]
    if abs(mask_ratio / image_ratio - 1) > ASPECT_TOLERANCE:
        raise InputImageError(
            f"{names['mask']} is {mask.width}x{mask.height} but {names['init']} is "
            f"{size[0]}x{size[1]}; make the mask from the image so they have the same shape."
        )
    return binarise(mask.resize(size, Image.Resampling.LANCZOS))
