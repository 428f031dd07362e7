"""CSV batches through the fake chat: one thread, one progress message, images grouped
per row, a manifest, and retry of failed and rejected rows."""

from __future__ import annotations

import csv
import io
import zipfile

from bot.ports import Attachment
from bot.testing.chat import FakeChat

CSV = (
    "product,style,lighting\n"
    "Red Widget,minimalist,studio\n"
    "Blue Widget,industrial,natural lighting\n"
    '"=HYPERLINK(""x"")",modern,studio\n'
)


def attach(text: str, name: str = "products.csv") -> tuple[Attachment, ...]:
    data = text.encode()
    return (Attachment(filename=name, content_type="text/csv", size=len(data), data=data),)


def manifest_rows(chat: FakeChat, thread) -> list[list[str]]:
    files = [m for m in chat.images(thread) if m.filename.endswith("-manifest.csv")]
    text = files[-1].data.decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_a_batch_makes_one_thread_with_one_progress_message_and_grouped_rows(chat: FakeChat):
    reply = chat.command(
        "/imagine batch product-photo --variations 2 --seed 100 --steps 2", attachments=attach(CSV)
    )
    assert reply.text.startswith("Queued batch `b"), reply.text
    assert "3 rows \u00d7 2 = 6 images on the bulk queue" in reply.text
    batch_id = reply.text.split("`")[1]
    chat.run_until_idle(timeout=120)
    chat.wait_for(
        lambda: any(m.filename and m.filename.endswith(".csv") for m in chat.images(reply.thread))
    )
    thread = chat.thread(reply.thread)
    texts = [m.text for m in thread if not m.is_image]
    progress = [m for m in thread if "\U0001f4e6 `" in m.text]
    assert len(progress) == 1, texts  # one message, edited in place
    assert "3/3 rows \u00b7 6 images" in progress[0].text
    assert progress[0].history, "the progress message was edited, not re-posted"
    pngs = [m for m in chat.images(reply.thread) if m.filename.endswith(".png")]
    labels = [m.text.split(" \u00b7 ")[0] for m in pngs]
    assert labels == ["Row 2", "Row 2", "Row 3", "Row 3", "Row 4", "Row 4"]
    assert "Red Widget" in pngs[0].text and "Blue Widget" in pngs[2].text
    # Seeds: row i gets seed + i * variations, image k adds k.
    assert [m.text.split("seed ")[1].split(" ")[0] for m in pngs] == [
        "100",
        "101",
        "102",
        "103",
        "104",
        "105",
    ]

    chat.react(pngs[0], "approve", user="U2")
    chat.react(pngs[3], "approve", user="U2")
    chat.react(pngs[4], "reject", user="U2")
    status = chat.command(f"/imagine batch status {batch_id}")
    assert status.text.startswith(f"Batch `{batch_id}`: 3/3 rows"), status.text
    rows = manifest_rows(chat, reply.thread)
    assert rows[0] == ["row", "variation", "file", "seed", "prompt", "state", "job", "flags"]
    assert {r[7] for r in rows[1:]} == {""}  # the tiny model's images pass the QA
    assert [(r[0], r[1], r[3], r[5]) for r in rows[1:]] == [
        ("2", "1", "100", "approved"), ("2", "2", "101", "pending"),
        ("3", "1", "102", "pending"), ("3", "2", "103", "approved"),
        ("4", "1", "104", "rejected"), ("4", "2", "105", "pending"),
    ]  # fmt: skip
    zips = [m for m in chat.images(reply.thread) if m.filename.endswith(".zip")]
    assert sorted(zipfile.ZipFile(io.BytesIO(zips[-1].data)).namelist()) == [
        "row002-v1-100.png", "row003-v2-103.png",
    ]  # fmt: skip

    retry = chat.command(f"/imagine batch retry {batch_id}")
    assert retry.text == f"Re-running 1 row(s) of batch `{batch_id}` with new seeds: 4."
    chat.run_until_idle(timeout=120)
    chat.wait_for(
        lambda: (
            len(manifest_rows(chat, reply.thread))
            and [m for m in chat.images(reply.thread) if m.filename.endswith(".csv")].__len__() >= 3
        )
    )
    rows = manifest_rows(chat, reply.thread)
    row4 = [r for r in rows[1:] if r[0] == "4"]
    assert [r[5] for r in row4] == ["pending", "pending"]
    assert not {r[3] for r in row4} & {"104", "105"}, "new seeds"


def test_a_bad_csv_reports_every_problem_and_queues_nothing(chat: FakeChat):
    bad = "product,colour\n,red\nMug,blue\n"
    reply = chat.command("/imagine batch product-photo", attachments=attach(bad))
    assert reply.text.startswith("The batch file has 2 problems; nothing was queued."), reply.text
    assert "row 1: unknown column `colour`" in reply.text
    assert "row 2: `product` is empty" in reply.text
    assert reply.thread is None and not chat.adapter.messages
    assert not chat.service.state.open_jobs(chat.adapter.platform)


def test_batch_words_without_a_template_are_a_prompt_and_usage_is_explained(chat: FakeChat):
    assert chat.command("/imagine batch product-photo").text.startswith("Attach the CSV file")
    assert chat.command("/imagine batch").text.startswith("Attach a CSV and name a template")
    assert "There is no batch in this channel" in chat.command("/imagine batch status").text
    reply = chat.command("/imagine batch of cookies on a plate --n 1 --steps 2")
    assert reply.text.startswith("Queued job"), reply.text
    chat.run_until_idle()
