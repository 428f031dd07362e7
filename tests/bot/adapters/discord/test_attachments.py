"""The shared attachment checks (``bot.jobs.attachments``): pure Pillow, no network."""

from __future__ import annotations

import pytest

from bot.jobs.attachments import AttachmentError, check_declared_size, check_image
from tests.bot.adapters.discord.images import encoded, png_bomb, truncated_png

MB = 1024 * 1024
LIMITS = {"max_bytes": 20 * MB, "max_pixels": 4096 * 4096}


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_images_pass_with_their_facts(fmt: str, mime: str) -> None:
    data = encoded(fmt, size=(96, 64))
    checked = check_image(data, filename=f"photo.{fmt.lower()}", **LIMITS)
    assert (checked.format, checked.content_type) == (fmt, mime)
    assert (checked.width, checked.height) == (96, 64)
    assert checked.data == data


def test_a_text_file_is_not_an_image() -> None:
    with pytest.raises(AttachmentError, match=r"`notes.txt` is not an image .* PNG, JPEG or WebP"):
        check_image(b"meeting notes\n", filename="notes.txt", **LIMITS)


def test_formats_outside_the_list_are_refused() -> None:
    with pytest.raises(AttachmentError, match="not an image"):
        check_image(encoded("GIF"), filename="anim.gif", **LIMITS)


def test_too_large_is_refused_before_downloading_and_after() -> None:
    with pytest.raises(AttachmentError, match=r"`big.png` is 25.0 MB; .* at most 20.0 MB"):
        check_declared_size(filename="big.png", size=25 * MB, max_bytes=20 * MB)
    data = encoded("PNG", size=(64, 64), noise=True)
    with pytest.raises(AttachmentError, match="at most"):
        check_image(data, filename="x.png", max_bytes=len(data) - 1, max_pixels=10**8)


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(10_000, 10_000)  # 100 million pixels in a few kilobytes
    assert len(bomb) < 10_000
    with pytest.raises(
        AttachmentError,
        match=r"10000x10000 \(100,000,000 pixels\); the limit is "
        r"16,777,216 pixels",
    ):
        check_image(bomb, filename="bomb.png", **LIMITS)


def test_a_bomb_beyond_pillows_own_guard_is_refused_too() -> None:
    with pytest.raises(AttachmentError, match="far too large; the limit is"):
        check_image(png_bomb(20_000, 20_000), filename="bomb.png", **LIMITS)


def test_only_the_header_is_read_here() -> None:
    # A truncated file has a sound header: the full decode before queueing refuses it
    # (tests/bot/jobs/test_img2img_chat.py), so the adapter does not decode it twice.
    checked = check_image(truncated_png(), filename="half.png", **LIMITS)
    assert (checked.format, checked.width, checked.height) == ("PNG", 64, 64)
