"""Checks of images users attach (init image, mask, control image), shared by the adapters.

Pure Pillow, no torch. Each check refuses with a sentence the user can act on
(:class:`AttachmentError`), so an adapter can answer at once and enqueue nothing:

1. the declared size, before anything is downloaded (:func:`check_declared_size`);
2. the bytes: size again, then the header only: format and pixel count, so a
   decompression bomb (a small file that decodes to gigabytes) is refused before decoding;
3. a full decode under the pixel limit, which catches truncated or corrupt files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from engine.errors import UserError

# Formats a diffusion pipeline can take as an init image, mask or control image.
FORMATS = ("PNG", "JPEG", "WEBP")
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class AttachmentError(UserError):
    """An attachment was refused: not an image, too large, or too many pixels."""

    kind = "invalid_attachment"


@dataclass(frozen=True)
class CheckedImage:
    """An attachment that passed every check."""

    data: bytes
    filename: str
    format: str  # one of FORMATS
    content_type: str
    width: int
    height: int


def check_declared_size(*, filename: str, size: int, max_bytes: int) -> None:
    """Refuse an attachment whose declared size is over ``max_bytes``, before downloading."""
    if size > max_bytes:
        raise AttachmentError(
            f"`{filename}` is {_megabytes(size)}; attachments may be at most "
            f"{_megabytes(max_bytes)}. Resize or compress it and attach it again."
        )


def check_image(data: bytes, *, filename: str, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Return the image's facts, or raise :class:`AttachmentError` with the reason."""
    check_declared_size(filename=filename, size=len(data), max_bytes=max_bytes)
    not_image = AttachmentError(
        f"`{filename}` is not an image Proofroom can read; attach a PNG, JPEG or WebP file."
    )
    try:
        # Opening reads the header only: the size is known before any pixel is decoded.
        # Pillow's own warning is silenced because our (lower) limit is checked next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        # Over twice Pillow's own limit (about 179 million pixels): refused at the header.
        raise _too_many_pixels(filename, None, max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise not_image from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise _too_many_pixels(filename, (width, height), max_pixels)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError):
            raise AttachmentError(
                f"`{filename}` could not be decoded (truncated or corrupt); "
                "export it again and attach the new file."
            ) from None
        fmt = str(image.format)
    return CheckedImage(
        data=data,
        filename=filename,
        format=fmt,
        content_type=_MIME[fmt],
        width=width,
        height=height,
    )


def _too_many_pixels(
    filename: str, size: tuple[int, int] | None, max_pixels: int
) -> AttachmentError:
    side = int(max_pixels**0.5)
    shown = f"{size[0]}x{size[1]} ({size[0] * size[1]:,} pixels)" if size else "far too large"
    return AttachmentError(
        f"`{filename}` is {shown}; the limit is {max_pixels:,} pixels "
        f"(for example {side}x{side}). Downscale it and attach it again."
    )


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"
