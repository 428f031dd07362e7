"""The main path through the fake chat, against the real queue, Redis and an embedded worker
on the tiny model: /imagine -> thread -> progress -> images -> votes -> export."""

from __future__ import annotations

import json
import re

import pytest

from bot.testing.chat import FakeChat
from engine.metadata import read_parameters

COMMAND = (
    '/imagine product-photo product="leather mug" style=luxury --lora tiny-style:0.7 '
    "--n 4 --steps 2 --seed 100"
)


@pytest.fixture()
def settings(settings):
    # Every step becomes a progress event, so the test sees the bar move.
    return settings.model_copy(update={"progress_interval_s": 0.0})


def job_id_of(reply_text: str) -> str:
    match = re.search(r"job `([0-9a-f]+)`", reply_text)
    assert match, reply_text
    return match.group(1)


def test_imagine_renders_into_a_thread_and_exports_exactly_the_approved_images(chat: FakeChat):
    reply = chat.command(COMMAND)
    job_id = job_id_of(reply.text)
    assert reply.thread is not None
    card = chat.thread(reply.thread)[0].text
    for expected in (
        "professional product photography of leather mug, luxury",
        "Negative: blurry",
        "Model `tiny`",
        "`tiny-style` 0.7",
        "seed 100",
        f"job `{job_id}`",
        'Template `product-photo` product="leather mug" style=luxury',
    ):
        assert expected in card

    chat.run_until_idle()
    thread = chat.thread(reply.thread)
    progress = [m for m in thread[1:] if not m.is_image]
    assert len(progress) == 1, "one progress message, edited in place"
    assert progress[0].text.startswith("\u2705 Done: 4 images")
    assert any(re.search(r"step \d+/8", text) for text in progress[0].history)
    assert progress[0].history[0].startswith("\u23f3 Queued")
    images = chat.images(reply.thread)
    assert [m.text.split(" \u00b7 ")[:2] for m in images] == [
        [f"Image {k + 1}/4", f"seed {100 + k}"] for k in range(4)
    ]

    chat.react(images[0], "approve", user="U2")
    chat.react(images[1], "white_check_mark", user="U3")  # a Slack emoji name
    chat.react(images[2], "\u274c", user="U2")  # a Discord emoji

    folder = chat.bot_settings.export_path(chat.settings)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{job_id}-{k}-{100 + k}.{ext}" for k in (0, 1) for ext in ("png", "json")
    )
    png = (folder / f"{job_id}-0-100.png").read_bytes()
    assert png == chat.store.get(chat.service.state.image(images[0].ref).artifact_id)
    assert "Seed: 100" in read_parameters(png)
    sidecar = json.loads((folder / f"{job_id}-0-100.json").read_text())
    assert sidecar["seed"] == 100
    assert sidecar["job_id"] == job_id
    assert sidecar["model"] == "tiny"
    assert sidecar["loras"] == [{"name": "tiny-style", "weight": 0.7}]
    assert sidecar["template"] == "product-photo"
    assert sidecar["variables"] == {"product": "leather mug", "style": "luxury"}
    assert sidecar["approved_by"] == ["U2"]
    assert sidecar["params"]["steps"] == 2
    assert sidecar["negative_prompt"].startswith("blurry")
    assert "leather mug" in sidecar["prompt"]

    said = [m.text for m in chat.thread(reply.thread)[-3:]]
    assert "approved by <@U2>" in said[0]
    assert "approved by <@U3>" in said[1]
    assert "rejected by <@U2>" in said[2]
    pending = chat.command("/imagine review").text
    assert "1 image(s) here wait" in pending
    assert "image 4/4" in pending

    # Taking the approval back takes the image out of the export.
    chat.unreact(images[0], "approve", user="U2")
    assert not (folder / f"{job_id}-0-100.png").exists()
    assert "no longer approved" in chat.thread(reply.thread)[-1].text


def test_a_rejected_image_is_rendered_again_when_the_policy_says_so(chat: FakeChat):
    chat.set_policy(auto_rerender_rejected=True, max_rerenders=1)
    reply = chat.command(
        "/imagine a red sports car at dusk --n 2 --steps 2 --seed 5 --lora tiny-style"
    )
    job_id = job_id_of(reply.text)
    chat.run_until_idle()
    first = chat.images(reply.thread)

    chat.react(first[1], "reject", user="U2")
    chat.run_until_idle()
    images = chat.images(reply.thread)
    assert len(images) == 3
    again = images[2]
    assert "re-render of image 2" in again.text
    record = chat.service.state.image(again.ref)
    assert record.seed != 6
    spec = chat.service.state.job(record.job_id).spec
    assert spec.parent == f"{job_id}/1"
    assert (spec.count, spec.prompt, spec.loras[0].name) == (
        1,
        "a red sports car at dusk",
        "tiny-style",
    )
    assert any("Re-rendering image 2" in m.text for m in chat.thread(reply.thread))

    # The lineage has used its one re-render: rejecting the new image says so instead.
    chat.react(again, "reject", user="U2")
    assert "the limit here" in chat.thread(reply.thread)[-1].text
    assert not chat.service.state.open_jobs(chat.adapter.platform)


def test_rerender_reaction_renders_one_image_with_a_new_seed(chat: FakeChat):
    reply = chat.command("/imagine a lighthouse --n 1 --steps 2 --seed 9")
    chat.run_until_idle()
    (image,) = chat.images(reply.thread)
    chat.react(image, "\U0001f501", user="U1")
    chat.run_until_idle()
    images = chat.images(reply.thread)
    assert len(images) == 2
    assert chat.service.state.image(images[1].ref).seed != 9


def test_a_failed_job_is_told_in_plain_words(chat: FakeChat):
    # brand-x is in the catalog but its file is not on this worker: a user error there.
    reply = chat.command("/imagine a handbag --model tiny-xl --lora brand-x --n 1")
    chat.run_until_idle()
    texts = [m.text for m in chat.thread(reply.thread)]
    assert any(t.startswith("\u26a0\ufe0f This job failed: LoRA `brand-x`") for t in texts)
    assert not any("Traceback" in t for t in texts)
    assert not chat.images(reply.thread)
