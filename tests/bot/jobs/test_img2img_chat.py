"""Jobs with attached images through the fake chat and a real worker: an attached image is
img2img, a mask makes inpainting, --control makes a ControlNet job; the inputs open the
thread under the job card and the outputs follow; bad inputs are refused before queueing."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from bot.ports import Attachment
from bot.testing.chat import FakeChat
from tests.bot.adapters.discord.images import truncated_png


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def attached(name: str, image: Image.Image, role: str | None = None) -> Attachment:
    data = png(image)
    return Attachment(name, "image/png", len(data), data, role=role)  # type: ignore[arg-type]


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (40, 90, 160))
    ImageDraw.Draw(image).ellipse((30, 10, 66, 46), fill=(230, 200, 40))
    return image


def mask() -> Image.Image:
    image = Image.new("L", (96, 64), 0)
    image.paste(255, (32, 16, 64, 48))
    return image


def test_an_attached_image_with_strength_makes_an_img2img_job(chat: FakeChat) -> None:
    fox = attached("fox.png", photo())
    reply = chat.command(
        "/imagine a red fox in snow --strength 0.6 --n 2 --steps 3", attachments=(fox,)
    )
    assert reply.text.startswith("Queued job"), reply.text
    assert reply.thread is not None
    chat.run_until_idle()

    card, shown, *rest = chat.thread(reply.thread)
    job = chat.service.state.job(reply.text.split("`")[1])
    assert job is not None
    spec = job.spec
    assert (spec.mode, spec.strength, spec.count, spec.input_fit) == ("img2img", 0.6, 2, "crop")
    assert chat.store.get(spec.init_image) == fox.data  # the original, by artifact id
    assert "Image-to-image from the image below \u00b7 strength 0.6" in card.text
    # The input opens the thread, as the job sees it: cropped to the job's 64x64.
    assert shown.is_image and shown.text.startswith("input image")
    assert Image.open(io.BytesIO(shown.data)).size == (64, 64)
    outputs = [m for m in rest if m.is_image]
    assert [m.text.split(" \u00b7 ")[0] for m in outputs] == ["Image 1/2", "Image 2/2"]
    assert (shown.votable, [m.votable for m in outputs]) == (False, [True, True])
    assert "Done: 2 images" in next(m.text for m in rest if not m.is_image)
    assert len(chat.images(reply.thread)) == 3


def test_a_named_mask_makes_inpainting_and_outside_pixels_stay(chat: FakeChat) -> None:
    picture = photo((64, 64))
    square = Image.new("L", (64, 64), 0)
    square.paste(255, (16, 16, 48, 48))
    files = (attached("cat.png", picture), attached("m.png", square))
    reply = chat.command("/imagine a cat --mask m.png --n 1 --steps 3", attachments=files)
    assert reply.text.startswith("Queued job"), reply.text
    chat.run_until_idle()
    texts = [m.text for m in chat.images(reply.thread)]
    assert texts[0].startswith("input image") and texts[1].startswith("mask (white = repaint)")
    output = chat.images(reply.thread)[-1]
    result = np.asarray(Image.open(io.BytesIO(output.data)).convert("RGB"))
    outside = np.asarray(square) == 0
    assert np.array_equal(result[outside], np.asarray(picture)[outside])


def test_control_canny_makes_a_controlnet_job(chat: FakeChat) -> None:
    reply = chat.command(
        "/imagine a vase --control canny --control-scale 0.7 --n 1 --steps 2",
        attachments=(attached("vase.png", photo()),),
    )
    assert reply.text.startswith("Queued job"), reply.text
    chat.run_until_idle()
    spec = chat.service.state.job(reply.text.split("`")[1]).spec  # type: ignore[union-attr]
    assert (spec.mode, spec.controlnet, spec.control_type, spec.control_scale) == (
        "controlnet",
        "tiny-canny",
        "canny",
        0.7,
    )
    first, output = chat.images(reply.thread)
    assert first.text.startswith("control (canny guide)")
    assert output.text.startswith("Image")


def test_discord_roles_decide_the_parts(chat: FakeChat) -> None:
    def spec_of(text: str, *files: Attachment):
        reply = chat.command(f"/imagine a vase --n 1 --steps 2 {text}", attachments=files)
        return chat.service.state.job(reply.text.split("`")[1]).spec  # type: ignore[union-attr]

    # A file in the control option without --control: canny, the guide any photo gives.
    spec = spec_of("", attached("guide.png", photo(), role="control"))
    assert (spec.mode, spec.control_type) == ("controlnet", "canny")
    # The image option with --control typed in the prompt: the image is the guide.
    spec = spec_of("--control depth", attached("depth.png", photo(), role="image"))
    assert (spec.mode, spec.control_type, spec.controlnet) == ("controlnet", "depth", "tiny-depth")
    assert spec.init_image is None and spec.control_image is not None


def test_bad_inputs_are_refused_before_anything_is_queued(chat: FakeChat) -> None:
    black = Image.new("L", (96, 64), 0)
    cases = [
        ("a cat --strength 0.5", (), "--strength says how far to move from an attached image"),
        ("a cat --control canny", (), "--control canny needs an attached image"),
        (
            "a cat --mask m.png",
            (attached("cat.png", photo()),),
            "--mask names `m.png`, but no attached image has that name (attached: `cat.png`)",
        ),
        (
            "a cat --mask m.png",
            (attached("cat.png", photo()), attached("m.png", black)),
            "`m.png` is all black, so nothing would change",
        ),
        (
            "a cat --mask m.png",
            (attached("m.png", mask()),),
            "`m.png` is a mask, but the image it masks is missing",
        ),
        (
            "a cat",
            (attached("a.png", photo()), attached("b.png", photo())),
            "`b.png` has no part here",
        ),
        (
            "a cat --control glow",
            (attached("a.png", photo()),),
            "--control takes canny, depth, openpose, scribble or a ControlNet name",
        ),
        (
            "a cat --model tiny-xl --control depth",
            (attached("a.png", photo()),),
            "there is no depth ControlNet for model `tiny-xl`",
        ),
        (
            "a cat --strength 2",
            (attached("a.png", photo()),),
            "Strength must be between 0 and 1; you asked for 2",
        ),
        (
            "a cat --steps 500",
            (attached("a.png", photo()),),
            "Steps must be between 1 and 60; you asked for 500",
        ),
        (
            "a cat --strength 0.5",
            (Attachment("half.png", "image/png", 4096, truncated_png()),),
            "`half.png` could not be decoded (truncated or corrupt)",
        ),
    ]
    for text, files, sentence in cases:
        reply = chat.command(f"/imagine {text}", attachments=files)
        assert sentence.lower() in reply.text.lower(), (text, reply.text)
        assert reply.thread is None
    assert not chat.adapter.messages
    assert not chat.service.state.open_jobs(chat.adapter.platform)
    # Checked before storing: a refused command leaves no input behind.
    assert not list(chat.settings.artifacts_dir.rglob("*.png"))


def test_files_that_are_not_images_are_left_to_other_workflows(chat: FakeChat) -> None:
    rows = Attachment("rows.csv", "text/csv", 4, b"a,b\n")
    reply = chat.command("/imagine a cat --n 1 --steps 2", attachments=(rows,))
    spec = chat.service.state.job(reply.text.split("`")[1]).spec  # type: ignore[union-attr]
    assert spec.mode == "txt2img"
