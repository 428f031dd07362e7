"""The worker's QA flags in the chat, through the fake chat on the real queue, Redis and an
embedded worker on the tiny model: the reason and score under a flagged image (escaped
like any text), nothing under one that passed, and the flags in the approved image's
export sidecar. Any hash distance counts as a near-duplicate here (64 bits), so every
image after the first of a job is flagged."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from bot.testing.chat import FakeChat
from engine.settings import QaSettings


@pytest.fixture()
def settings(settings):
    return settings.model_copy(update={"qa": QaSettings(duplicate_distance=64)})


def test_a_flagged_image_is_posted_with_its_reason_and_exported_with_its_flags(
    chat: FakeChat,
) -> None:
    reply = chat.command("/imagine a red mug --n 2 --steps 2 --seed 100")
    job_id = re.search(r"job `([0-9a-f]+)`", reply.text).group(1)  # type: ignore[union-attr]
    chat.run_until_idle()
    first, second = chat.images(reply.thread)
    assert "QA flagged" not in first.text
    flagged = second.text.split("\n")[-1]
    # The fake chat shows the neutral markup: "<=" travels escaped.
    assert re.fullmatch(
        r"\u26a0\ufe0f QA flagged: near-duplicate of image 1 \(distance \d+ &lt;= 64\)", flagged
    ), second.text

    chat.react(second, "approve", user="U2")
    folder = chat.bot_settings.export_path(chat.settings)
    sidecar = json.loads((folder / f"{job_id}-1-101.json").read_text())
    [flag] = sidecar["qa"]["flags"]
    assert flag["check"] == "duplicate" and flag["threshold"] == 64
    assert set(sidecar["qa"]["scores"]) >= {"sharpness", "brightness", "contrast", "phash"}


def test_a_batch_manifest_in_the_chat_has_a_flags_column(chat: FakeChat) -> None:
    from tests.bot.batch.test_chat import attach, manifest_rows

    csv_text = "product,style,lighting\nRed Widget,minimalist,studio\n"
    reply = chat.command(
        "/imagine batch product-photo --variations 2 --seed 100 --steps 2",
        attachments=attach(csv_text),
    )
    chat.run_until_idle(timeout=120)
    chat.wait_for(
        lambda: any(m.filename and m.filename.endswith(".csv") for m in chat.images(reply.thread))
    )
    manifest = [m for m in chat.images(reply.thread) if m.filename.endswith("-manifest.csv")][-1]
    assert "1 flagged by the automated QA (its `flags` column)." in manifest.text
    rows = manifest_rows(chat, reply.thread)
    assert rows[0][-1] == "flags"
    assert [row[-1] for row in rows[1:]][0] == ""
    assert rows[2][-1].startswith("near-duplicate of image 1 (distance ")

    status = chat.command("/imagine batch status unflagged")
    assert status.text.endswith("The manifest of the unflagged images is in the batch's thread.")
    [unflagged] = [
        m for m in chat.images(reply.thread) if m.filename.endswith("-manifest-unflagged.csv")
    ]
    kept = list(csv.reader(io.StringIO(unflagged.data.decode("utf-8-sig"))))
    assert kept[0] == rows[0] and kept[1:] == [rows[1]]  # the flagged variation is left out
