"""Hostile attachments: each is refused with a sentence before anything is queued, or
converted to what a job takes, on every way in:

- the chat path: the adapters' shared check (``bot.jobs.attachments.checked_attachment``,
  what the Slack and Discord adapters run on a downloaded file, answering its sentence),
  then the service with the checked attachment (``FakeChat``);
- the service alone, with the file as a platform declared it (no adapter check first);
- the HTTP API's base64 path (``bot.api.requests.to_request`` then ``ApiJobs.submit``).

And a property: any bytes, and any damage to a real PNG, JPEG or WebP, give a checked image
or a sentence, never another exception."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis as redis_lib
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.api.jobs import ApiJobs
from bot.api.keys import ApiKeys
from bot.api.requests import JobRequest, to_request
from bot.jobs.attachments import AttachmentError, check_image, checked_attachment
from bot.ports import Attachment
from bot.testing.chat import FakeChat
from engine.errors import UserError
from engine.inputs import InputImageError, prepare
from tests.bot.conftest import queued_jobs
from tests.bot.hostile import images
from tests.bot.hostile.conftest import CRASHED, Outcome, assert_answered, outcome, stored_files
from tests.bot.hostile.strategies import PURE, REDIS

NOT_READABLE = "is not an image Proofroom can read; attach a PNG, JPEG or WebP file."


@dataclass(frozen=True)
class Case:
    """A hostile file: its name, bytes, the type a platform would declare, and what must
    happen (``refused`` matches the sentence; None: converted and queued)."""

    filename: str
    data: Callable[[], bytes]
    declared: str
    refused: str | None


CASES = {
    "not an image": Case("notes.png", lambda: b"meeting notes\n", "image/png", NOT_READABLE),
    "truncated PNG": Case(
        "half.png", images.truncated, "image/png", r"could not be decoded \(truncated or corrupt\)"
    ),
    "30000x30000 bomb": Case(
        "bomb.png", images.bomb, "image/png", "is far too large; the limit is 16,777,216 pixels"
    ),
    "60 MB file": Case("big.png", images.sixty_megabytes, "image/png", "60.0 MB"),
    "zTXt bomb": Case("notes-bomb.png", images.text_bomb, "image/png", NOT_READABLE),
    "SVG": Case("logo.svg", lambda: images.SVG, "image/svg+xml", "PNG, JPEG or WebP"),
    "1000-frame GIF": Case("anim.gif", images.animated_gif, "image/gif", "PNG, JPEG or WebP"),
    "4 MB tEXt chunk": Case("text.png", images.huge_text_chunk, "image/png", None),
    "CMYK JPEG": Case("print.jpg", images.cmyk_jpeg, "image/jpeg", None),
    "16-bit PNG": Case("scan.png", images.sixteen_bit_png, "image/png", None),
}
# What the job sees of the converted ones (the input shown in the thread, at pixel 5,5):
# CMYK (0, 200, 200, 0) is RGB (255, 55, 55); a 16-bit grey of 40000/65535 is 156/255,
# where Pillow's own conversion clipped it to white (255) before the suite's fix.
SEEN = {"CMYK JPEG": (255, 55, 55), "16-bit PNG": (156, 156, 156), "4 MB tEXt chunk": (200, 30, 30)}


def through_adapter(chat: FakeChat, text: str, case: Case) -> Outcome:
    """What a Slack or Discord user sees: the shared attachment check's sentence, or the
    service's reply to the command with the checked file."""
    data = case.data()
    before = queued_jobs(chat.settings, chat.redis)
    try:
        attachment = checked_attachment(
            data,
            filename=case.filename,
            csv=False,
            max_bytes=chat.bot_settings.upload_max_bytes,
            max_pixels=chat.settings.limits.max_input_pixels,
        )
    except AttachmentError as exc:
        return Outcome(exc.message, queued_jobs(chat.settings, chat.redis) - before)
    return outcome(chat, text, attachments=(attachment,))


def assert_case(result: Outcome, name: str, case: Case) -> None:
    assert_answered(result)
    if case.refused is None:
        assert result.text.startswith("Queued job"), result
        assert result.queued == 1
    else:
        assert re.search(case.refused, result.text), result
        assert result.queued == 0
        assert case.filename in result.text, "the sentence names the file"


def shown_input(chat: FakeChat) -> tuple[int, ...]:
    """The pixel at (5, 5) of the input image the last job's thread opened with."""
    shown = [m for m in chat.adapter.messages.values() if m.is_image]
    assert shown and shown[-1].text.startswith("input image"), chat.dump()
    assert shown[-1].data is not None
    image = Image.open(io.BytesIO(shown[-1].data))
    assert image.mode == "RGB"
    return tuple(image.getpixel((5, 5)))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(CASES))
def test_through_the_chat_each_is_refused_or_converted_before_queueing(
    quiet_chat: FakeChat, name: str
) -> None:
    case = CASES[name]
    result = through_adapter(quiet_chat, "/imagine a poster --strength 0.5", case)
    assert_case(result, name, case)
    if name in SEEN:
        assert shown_input(quiet_chat) == SEEN[name]


@pytest.mark.parametrize("name", list(CASES))
def test_the_service_alone_refuses_or_converts_them_too(quiet_chat: FakeChat, name: str) -> None:
    case = CASES[name]
    data = case.data()
    attachment = Attachment(case.filename, case.declared, len(data), data)
    result = outcome(quiet_chat, "/imagine a poster --strength 0.5", attachments=(attachment,))
    if name == "60 MB file":
        # The byte limit is the adapters' (each platform's own); past them, these 60 MB
        # are still no image, and the decode says so.
        case = Case(case.filename, case.data, case.declared, NOT_READABLE)
    assert_case(result, name, case)
    if case.refused is not None:
        assert stored_files(quiet_chat.settings) == [], "a refused file is not stored"


# 60 MB is 80 MB of base64: the HTTP body limit (25 MiB) answers 413 before the body is
# parsed (tests/bot/api/test_errors.py::test_413_for_a_body_over_the_limit_declared_or_streamed).
@pytest.mark.parametrize("name", [name for name in CASES if name != "60 MB file"])
def test_the_api_base64_path_refuses_or_converts_them(
    quiet_chat: FakeChat, redis: redis_lib.Redis, name: str
) -> None:
    case = CASES[name]
    chat = quiet_chat
    jobs = ApiJobs(
        redis=redis,
        settings=chat.settings,
        bot_settings=chat.bot_settings,
        store=chat.store,
        catalog=chat.catalog,
    )
    key, _ = ApiKeys(redis=redis, key_prefix=chat.settings.key_prefix).create(name="cms", user="U3")
    body = JobRequest(
        prompt="a poster",
        strength=0.5,
        init_image="data:image/png;base64," + base64.b64encode(case.data()).decode(),
    )
    before = queued_jobs(chat.settings, redis)
    try:
        request, files = to_request(
            body, catalog=chat.catalog, max_image_bytes=chat.bot_settings.upload_max_bytes
        )
        spec = jobs.submit(request, key=key, images=files)
    except UserError as exc:
        assert case.refused is not None, exc.message
        assert re.search(case.refused.replace(case.filename, "init_image"), exc.message), exc
        assert queued_jobs(chat.settings, redis) == before
    else:
        assert case.refused is None, f"{name} was queued"
        assert spec.init_image and queued_jobs(chat.settings, redis) == before + 1


SAMPLES = [
    images.encoded(Image.new("RGB", (24, 16), (10, 120, 200)), fmt, **options)
    for fmt, options in (("PNG", {}), ("JPEG", {"quality": 80}), ("WEBP", {}))
] + [images.sixteen_bit_png(), images.cmyk_jpeg()]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real small image with bytes flipped, cut off, or inserted."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip":
            data[where] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[where:]
            if not data:
                break
        else:
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@PURE
@given(data=st.one_of(st.binary(max_size=200), damaged()))
def test_any_bytes_give_a_checked_image_or_a_sentence(data: bytes) -> None:
    limits = {"max_pixels": 4096 * 4096}
    try:
        checked = check_image(data, filename="x.png", max_bytes=8 * images.MB, **limits)
    except InputImageError as exc:
        assert exc.message.startswith("`x.png`"), exc.message
        return
    assert checked.format in ("PNG", "JPEG", "WEBP")
    try:
        prepared = prepare(
            images={"init": data}, width=64, height=64, how="crop", labels=None, **limits
        )
    except InputImageError as exc:
        assert exc.message.startswith("the init image"), exc.message
        return
    assert prepared.init is not None and prepared.init.mode == "RGB"


@REDIS
@given(data=damaged())
def test_damaged_images_in_chat_are_queued_or_refused_whole(
    quiet_chat: FakeChat, data: bytes
) -> None:
    attachment = Attachment("photo.png", "image/png", len(data), data)
    stored = len(stored_files(quiet_chat.settings))
    result = outcome(quiet_chat, "/imagine a poster --strength 0.5", attachments=(attachment,))
    assert CRASHED not in result.text
    assert_answered(result)
    if result.queued == 0:
        assert len(stored_files(quiet_chat.settings)) == stored, "a refused file is not stored"


def test_a_sixteen_bit_mask_is_scaled_not_clipped() -> None:
    # Found by the suite: Pillow's I;16 -> L conversion clips at 255, so a dark 16-bit mask
    # (20000 of 65535, grey 78) became all white and would repaint the whole picture.
    init = images.photo()
    with pytest.raises(InputImageError, match="the mask is all black"):
        prepare(
            images={"init": init, "mask": images.sixteen_bit_png(20_000)},
            width=64,
            height=64,
            how="crop",
            max_pixels=4096 * 4096,
        )
    bright = prepare(
        images={"init": init, "mask": images.sixteen_bit_png(50_000)},
        width=64,
        height=64,
        how="crop",
        max_pixels=4096 * 4096,
    )
    assert bright.mask is not None and bright.mask.getextrema() == (255, 255)
