"""Hostile attachments, built in the test: each is a few bytes to a few kilobytes except the
60 MB file (zero bytes behind a PNG signature, built in a few milliseconds)."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from tests.bot.adapters.discord.images import png_bomb

MB = 1024 * 1024


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` saved as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (64, 64)) -> bytes:
    """A small ordinary PNG."""
    return encoded(Image.new("RGB", size, (200, 30, 30)), "PNG")


def bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 1-bit PNG announcing ``width`` x ``height`` (900 million pixels) with a few rows of
    data: about a hundred bytes on the wire, gigabytes once decoded."""
    return png_bomb(width, height, bits=1)


def truncated() -> bytes:
    """The first half of a PNG of noise: a sound header, then nothing."""
    noise = Image.effect_noise((64, 64), 64).convert("RGB")
    data = encoded(noise, "PNG")
    return data[: len(data) // 2]


def sixty_megabytes() -> bytes:
    """60 MB behind a PNG signature."""
    return b"\x89PNG\r\n\x1a\n" + bytes(60 * MB)


def huge_text_chunk(size: int = 4 * MB) -> bytes:
    """A small PNG carrying a ``size``-byte ``tEXt`` chunk (a 4 MB "prompt")."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "x" * size)
    return encoded(Image.new("RGB", (64, 64), (200, 30, 30)), "PNG", pnginfo=info)


def text_bomb() -> bytes:
    """A PNG whose compressed ``zTXt`` chunk inflates to 50 MB."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "x" * (50 * MB), zip=True)
    return encoded(Image.new("RGB", (64, 64), (200, 30, 30)), "PNG", pnginfo=info)


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<image href="file:///etc/passwd"/><rect width="64" height="64" fill="red"/></svg>'
)


def animated_gif(frames: int = 1000) -> bytes:
    """A GIF of ``frames`` small frames, each a different grey."""
    images = [Image.new("L", (16, 16), i % 256) for i in range(frames)]
    return encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=20)


def cmyk_jpeg() -> bytes:
    """A JPEG in CMYK (print workflows export these): cyan 0, magenta 200, yellow 200."""
    return encoded(Image.new("CMYK", (64, 64), (0, 200, 200, 0)), "JPEG")


def sixteen_bit_png(level: int = 40_000) -> bytes:
    """A 16-bit grayscale PNG (mode ``I;16``) at ``level`` of 65535."""
    image = Image.new("I;16", (64, 64))
    image.putdata([level] * (64 * 64))
    return encoded(image, "PNG")
