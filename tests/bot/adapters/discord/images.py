"""Image bytes for the tests: real encodings, a truncated file, and decompression bombs
(a valid PNG header announcing far more pixels than the few bytes behind it)."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image


def encoded(fmt: str = "PNG", *, size: tuple[int, int] = (64, 64), noise: bool = False) -> bytes:
    """An image in ``fmt``; with ``noise`` it does not compress (for upload-limit tests)."""
    if noise:
        rng = random.Random(0)
        image = Image.frombytes(
            "RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3))
        )
    else:
        image = Image.new("RGB", size, (200, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_bomb(width: int, height: int, *, bits: int = 8) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (grayscale, ``bits`` per pixel); the
    data is a few rows. Decoding it would need width*height pixels; opening it reads only
    the header. With ``bits=1`` a 30,000 x 30,000 one is about a hundred bytes."""
    row = bytes((width * bits + 7) // 8)
    raw = (b"\x00" + row) * 4  # filter byte + 4 rows
    ihdr = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def truncated_png() -> bytes:
    data = encoded("PNG", size=(64, 64), noise=True)
    return data[: len(data) // 2]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + kind
        + body
        + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )
