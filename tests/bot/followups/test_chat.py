"""Variations (🔀, ``/imagine vary``) and upscales (⬆️, ``/imagine upscale``) through the
fake chat, against the real queue, Redis and an embedded worker on the tiny model."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.quotas.policy import Quotas
from bot.testing.chat import FakeChat, FakeMessage
from engine.spec import Mode
from tests.bot.followups.helpers import card, job_id_in, spec_of

PROMPT = "/imagine a lighthouse on a cliff --lora tiny-style:0.6 --n 2 --seed 9"


def two_images(chat: FakeChat) -> tuple[str, list[FakeMessage]]:
    reply = chat.command(PROMPT)
    assert reply.thread is not None, reply.text
    chat.run_until_idle()
    images = chat.images(reply.thread)
    assert len(images) == 2
    return job_id_in(reply.text), images


def test_vary_reaction_renders_four_variations_in_the_images_thread(chat: FakeChat):
    job_id, images = two_images(chat)
    parent = chat.service.state.image(images[1].ref)
    chat.react(images[1], "\U0001f500", user="U1")  # the requester's own image
    opened = card(chat, images[1], "\U0001f500 Variations of image 2 (subtle)")
    variation_job = job_id_in(opened.text)
    assert opened.ref.thread == images[1].ref.thread_id  # in the image's thread

    spec = chat.service.queue.spec(variation_job)
    assert spec is not None
    original = spec_of(chat, job_id)
    assert spec.mode is Mode.img2img
    assert spec.init_image == parent.artifact_id
    assert spec.strength == 0.35
    assert spec.parent == f"{job_id}/1"
    assert (spec.prompt, spec.model, spec.loras) == (original.prompt, "tiny", original.loras)
    assert spec.count == 4
    assert spec.priority == "interactive"
    assert spec.requested_by == "fake:U1"

    chat.run_until_idle()
    thread = chat.images(images[1].ref)
    assert len(thread) == 6
    made = thread[2:]
    assert [m.text.split(" \u00b7 ")[0] for m in made] == [
        f"Variation {k}/4 of image 2" for k in range(1, 5)
    ]
    seeds = [chat.service.state.image(m.ref).seed for m in made]
    assert len(set(seeds)) == 4 and parent.seed not in seeds  # new seeds
    # Progress in the thread as for every job, and the variations are reviewable.
    assert any(m.text.startswith("\u2705 Done: 4 images") for m in chat.thread(images[1].ref))
    chat.react(made[0], "approve", user="U2")
    assert "approved by <@U2>" in chat.thread(images[1].ref)[-1].text


def test_vary_command_strong_with_a_count(chat: FakeChat):
    job_id, images = two_images(chat)
    reply = chat.command(f"/imagine vary {job_id}#1 --strong --n 2")
    assert reply.text.startswith("Queued job `"), reply.text
    assert f"2 variation(s) (strong) of image 1 of job `{job_id}`" in reply.text
    assert reply.thread is None  # nothing opened in the channel: it is the image's thread
    spec = chat.service.queue.spec(job_id_in(reply.text))
    assert spec is not None
    assert (spec.strength, spec.count, spec.parent) == (0.65, 2, f"{job_id}/0")
    card(chat, images[0], "\U0001f500 Variations of image 1 (strong)")
    chat.run_until_idle()
    made = chat.images(images[0].ref)[2:]
    assert [m.text.split(" \u00b7 ")[0] for m in made] == [
        "Variation 1/2 of image 1",
        "Variation 2/2 of image 1",
    ]


def test_upscale_reaction_queues_a_2x_upscale_with_the_models_tile(chat: FakeChat):
    job_id, images = two_images(chat)
    chat.close()  # the queued spec is the claim; the render is the end-to-end test's below
    parent = chat.service.state.image(images[0].ref)
    chat.react(images[0], "arrow_up", user="U1")  # Slack's name for ⬆️
    opened = card(chat, images[0], "\u2b06\ufe0f Upscaling image 1 2x to 128x128")
    spec = chat.service.queue.spec(job_id_in(opened.text))
    assert spec is not None
    assert spec.mode is Mode.upscale
    assert (spec.scale, spec.width, spec.height, spec.count) == (2, 128, 128, 1)
    assert spec.tile_size == 64  # tiny's native size, from the catalog
    assert spec.init_image == parent.artifact_id
    assert spec.parent == f"{job_id}/0"
    assert spec.seed == parent.seed  # an upscale keeps the image's own seed


def test_upscale_command_4x(chat: FakeChat):
    job_id, images = two_images(chat)
    # What is queued and said is the claim, not the render (the engine's upscale tests and the
    # 2x end to end below render): without a worker the 256x256 upscale waits in the queue
    # instead of holding the teardown while 25 tiles render.
    chat.close()
    reply = chat.command(f"/imagine upscale {job_id}#2 --scale 4")
    assert "image 2 upscaled 4x to 256x256" in reply.text, reply.text
    spec = chat.service.queue.spec(job_id_in(reply.text))
    assert spec is not None
    assert (spec.mode, spec.scale, spec.width, spec.tile_size) == (Mode.upscale, 4, 256, 64)
    card(chat, images[1], "\u2b06\ufe0f Upscaling image 2 4x to 256x256")


def test_only_the_requester_or_a_reviewer_may_ask(chat: FakeChat):
    chat.set_policy(approver_ids=frozenset({"UREV"}))
    job_id, images = two_images(chat)
    chat.react(images[0], "\U0001f500", user="USTRANGER")
    chat.react(images[0], "\u2b06", user="USTRANGER")
    assert not [m for m in chat.thread(images[0].ref) if "Variations of" in m.text]
    [notice] = chat.notices_for("USTRANGER")  # told once per thread
    assert "can ask for variations of it" in notice.text
    refused = chat.command(f"/imagine vary {job_id}#1", user="USTRANGER")
    assert "only the person who asked for an image or a reviewer" in refused.text.lower()
    assert not chat.service.queue.jobs_for("fake:USTRANGER")

    chat.react(images[0], "\U0001f500", user="UREV")  # a reviewer may
    card(chat, images[0], "\U0001f500 Variations of image 1")


def test_quota_refusal_is_said_in_the_thread_and_nothing_is_queued(chat: FakeChat):
    chat.set_policy(quotas=Quotas(images_per_day=5))
    job_id, images = two_images(chat)  # 2 of 5 used
    chat.react(images[0], "\U0001f500", user="U1")  # 4 more: over
    said = chat.thread(images[0].ref)[-1].text
    assert said.startswith("<@U1> You have used 2 of your 5 images"), said
    assert not [m for m in chat.thread(images[0].ref) if "Variations of" in m.text]
    # The refusal gave nothing away, and a smaller request still fits.
    reply = chat.command(f"/imagine vary {job_id}#1 --n 3")
    assert reply.text.startswith("Queued job"), reply.text
    over = chat.command(f"/imagine upscale {job_id}#1")
    assert "used 5 of your 5 images" in over.text


def test_a_redelivered_or_repeated_reaction_makes_one_job(chat: FakeChat):
    job_id, images = two_images(chat)
    chat.react(images[0], "\U0001f500", user="U1", event_id="Ev1")
    chat.react(images[0], "\U0001f500", user="U1", event_id="Ev1")  # the platform again
    chat.react(images[0], "\U0001f500", user="U1", event_id="Ev2")  # a quick second click
    cards = [m for m in chat.thread(images[0].ref) if "Variations of image 1" in m.text]
    assert len(cards) == 1
    # Another reviewer's 🔀 is a request of their own (everyone reviews by default).
    chat.react(images[0], "\U0001f500", user="U3", event_id="Ev3")
    assert len([m for m in chat.thread(images[0].ref) if "Variations of" in m.text]) == 2


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/imagine vary nosuchjob#2", "there is no job `nosuchjob` with images in this channel"),
        ("/imagine vary {job}#7", "has no image 7 in its thread (its images: 1, 2)"),
        ("/imagine vary {job}", "has several images; name one: `{job}#1`, `{job}#2`"),
        ("/imagine vary {job}#1 --n 40", "the number of variations (--n) is from 1 to 8"),
        ("/imagine upscale {job}#1 --scale 3", "an upscale is 2 or 4 times"),
        ("/imagine vary", "Say which image: `/imagine vary JOB#K"),
    ],
)
def test_a_bad_command_gets_a_sentence(chat: FakeChat, command: str, expected: str):
    job_id, _ = two_images(chat)
    reply = chat.command(command.format(job=job_id))
    assert expected.format(job=job_id).lower() in reply.text.lower(), reply.text
    assert reply.text[:1].isupper()
    assert not chat.service.state.open_jobs(chat.adapter.platform)


def test_the_command_works_only_in_the_images_channel(chat: FakeChat):
    job_id, _ = two_images(chat)
    reply = chat.command(f"/imagine vary {job_id}#1", channel="COTHER")
    assert "no job" in reply.text and "in the image's channel" in reply.text


def test_a_prompt_starting_with_the_word_is_still_a_prompt(chat: FakeChat):
    reply = chat.command("/imagine upscale photo of a loft --n 1")
    assert reply.text.startswith("Queued job"), reply.text
    assert "upscale photo of a loft" in chat.thread(reply.thread)[0].text


def test_variations_flag_on_imagine_points_to_the_reaction(chat: FakeChat):
    reply = chat.command("/imagine a cat --variations 3")
    assert "react \U0001f500 on it or type `/imagine vary JOB#K`" in reply.text
    assert "use --n" in reply.text
    assert reply.thread is None


def test_help_lists_the_new_reactions_and_commands(chat: FakeChat):
    text = chat.command("/imagine help").text
    assert "\U0001f500 variations" in text and "\u2b06\ufe0f upscale" in text
    assert "`/imagine vary JOB#K [--strong] [--n 4]`" in text


def test_an_upscale_through_chat_posts_the_larger_image_in_the_thread(chat: FakeChat):
    # End to end through the engine's tiled upscale (engine.upscale): not skipped, so it
    # fails while the worker cannot render Mode.upscale.
    _, images = two_images(chat)
    chat.react(images[0], "\u2b06\ufe0f", user="U1")
    chat.run_until_idle(timeout=120)
    thread = chat.thread(images[0].ref)
    assert not [m for m in thread if m.text.startswith("\u26a0\ufe0f This job failed")], chat.dump()
    made = chat.images(images[0].ref)[2:]
    assert len(made) == 1
    assert made[0].text.startswith("Image 1 upscaled 2x \u00b7 seed ")
    record = chat.service.state.image(made[0].ref)
    assert (record.width, record.height) == (128, 128)
    with Image.open(io.BytesIO(made[0].data or b"")) as png:
        assert png.size == (128, 128)
    chat.react(made[0], "approve", user="U2")  # reviewable like any other
    assert "approved by <@U2>" in chat.thread(images[0].ref)[-1].text


def test_a_job_whose_images_are_not_posted_yet(chat: FakeChat):
    reply = chat.command("/imagine a lighthouse --n 1")
    job_id = job_id_in(reply.text)
    answer = chat.command(f"/imagine upscale {job_id}").text  # before any event was shown
    assert answer == (
        f"Job `{job_id}` has no images in its thread yet; wait for them, or "
        f"`/imagine repost {job_id}` if they could not be posted"
    )
    chat.run_until_idle()
