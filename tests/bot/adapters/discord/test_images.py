"""Fitting an image under an upload limit (``bot.adapters.images``)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.adapters.images import fit_upload
from tests.bot.adapters.discord.images import encoded


def test_an_image_under_the_limit_is_untouched() -> None:
    png = encoded("PNG")
    fitted = fit_upload(png, filename="a.png", limit=len(png))
    assert (fitted.data, fitted.filename, fitted.note) == (png, "a.png", None)


def test_quality_goes_down_before_the_size() -> None:
    png = encoded("PNG", size=(256, 256), noise=True)
    fitted = fit_upload(png, filename="job-0-7.png", limit=len(png) // 3)
    assert len(fitted.data) <= len(png) // 3
    assert fitted.filename in ("job-0-7.jpg", "job-0-7.webp")
    with Image.open(io.BytesIO(fitted.data)) as image:
        assert image.size == (256, 256)
    assert "original is kept" in (fitted.note or "")


def test_then_the_image_is_downscaled() -> None:
    png = encoded("PNG", size=(256, 256), noise=True)
    fitted = fit_upload(png, filename="a.png", limit=6_000)
    assert len(fitted.data) <= 6_000
    with Image.open(io.BytesIO(fitted.data)) as image:
        assert image.width < 256
    assert "x" in (fitted.note or "")  # says the new size


def test_an_impossible_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot be made smaller"):
        fit_upload(encoded("PNG", size=(256, 256), noise=True), filename="a.png", limit=50)
