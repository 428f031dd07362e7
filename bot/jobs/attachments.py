"""Checks of images users attach (init image, mask, control image), shared by the adapters.

Pure Pillow, no torch. Each check refuses with a sentence the user can act on
(:class:`AttachmentError`), so an adapter can answer at once and enqueue nothing:

1. the declared size, before anything is downloaded (:func:`check_declared_size`);
2. the bytes (:func:`check_image`): size again, then the header only: format and pixel
   count, so a decompression bomb (a small file that decodes to gigabytes) is refused
   before decoding. This is ``engine.inputs.open_header``, the worker's own first step.

The full decode, which catches truncated or corrupt files, happens once, when the service
runs the worker's own preparation on the inputs before queueing
(``bot.jobs.inputs.check_inputs``), so the bot and the worker cannot disagree about what an
acceptable image is.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.ports import Attachment
from engine.inputs import FORMATS, MIME, InputImageError, open_header

# The engine's refusal is the bot's: adapters catch AttachmentError for both.
AttachmentError = InputImageError


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
    """Return the image's facts from its header, or raise :class:`AttachmentError` with the
    reason (decoding is left to the inputs' preparation, see the module docstring)."""
    check_declared_size(filename=filename, size=len(data), max_bytes=max_bytes)
    with open_header(data, label=f"`{filename}`", max_pixels=max_pixels) as image:
        fmt = str(image.format)
        width, height = image.size
    return CheckedImage(
        data=data,
        filename=filename,
        format=fmt,
        content_type=MIME[fmt],
        width=width,
        height=height,
    )


def checked_attachment(
    data: bytes,
    *,
    filename: str,
    csv: bool,
    max_bytes: int,
    max_pixels: int,
    role: str | None = None,
) -> Attachment:
    """A downloaded file as the port's :class:`~bot.ports.Attachment`: a CSV as it is (the
    batch desk checks its text row by row), an image once :func:`check_image` passed it;
    ``role`` is the part a platform's option gave it (image, mask, control)."""
    if csv:
        return Attachment(filename, "text/csv", len(data), data)
    image = check_image(data, filename=filename, max_bytes=max_bytes, max_pixels=max_pixels)
    return Attachment(filename, image.content_type, len(data), data, role=role)  # type: ignore[arg-type]


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


__all__ = [
    "FORMATS",
    "AttachmentError",
    "CheckedImage",
    "check_declared_size",
    "check_image",
    "checked_attachment",
]
