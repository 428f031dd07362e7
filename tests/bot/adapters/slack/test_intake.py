"""Files attached to an ``@proofroom`` mention (a slash command cannot carry one): checked,
downloaded with the bot token, and handed to the core as attachments; a file that is too
large or not an image/CSV is refused with a sentence and nothing is queued."""

from __future__ import annotations

import io

import redis as redis_lib
from PIL import Image

from engine.queue import JobQueue
from engine.settings import Settings
from engine.store import store_from_settings
from tests.bot.adapters.slack.conftest import RecordingCore, wait_for
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import mention
from tests.bot.conftest import queued_jobs

USER = "UALICE"
CHANNEL = "CGENERAL"


def png(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def ephemerals(fake: FakeSlack) -> list[str]:
    return [c.args["text"] for c in fake.calls_to("chat.postEphemeral")]


def test_an_attached_png_reaches_the_core_as_an_attachment(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    recorder: list[RecordingCore] = []
    slack = make_slack(core=lambda service: recorder.append(RecordingCore(service)) or recorder[0])
    data = png()
    file = fake_slack.host_file(name="sketch.png", data=data, mimetype="image/png", filetype="png")

    sent = slack.send.event(
        mention(text="a red fox --n 1", user=USER, channel=CHANNEL, files=[file])
    )

    assert sent.status == 200 and sent.elapsed_s < 3
    command = wait_for(lambda: recorder[0].commands, what="the command at the core")[0]
    assert command.text == "a red fox --n 1"  # the bot mention is not part of the command
    assert command.user == USER and command.channel == CHANNEL
    (attachment,) = command.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "sketch.png",
        "image/png",
        len(data),
    )
    assert attachment.read() == data
    download = fake_slack.calls_to("download")[0]
    assert download.token == fake_slack.bot_token  # downloaded with the bot token
    # The core answered the requester only, and the image made an img2img job: stored, its
    # artifact id in the spec, shown in the thread under the job card.
    reply = wait_for(lambda: ephemerals(fake_slack), what="the reply")[0]
    assert reply.startswith("Queued job"), reply
    assert queued_jobs(settings, redis) == 1
    spec = JobQueue(redis=redis, settings=settings).spec(reply.split("`")[1])
    assert spec is not None and spec.mode == "img2img" and spec.strength == 0.75
    assert store_from_settings(settings).get(spec.init_image) == data
    (shown,) = fake_slack.uploads.values()
    assert shown["filename"] == f"{spec.id}-init.png"
    assert shown["initial_comment"].startswith("input image") and shown["thread_ts"]


def test_a_60_mb_file_is_refused_before_download_and_nothing_is_queued(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()
    file = fake_slack.host_file(
        name="huge.png", data=png(), mimetype="image/png", filetype="png", size=60 * 1024 * 1024
    )

    slack.send.event(mention(text="a red fox", user=USER, channel=CHANNEL, files=[file]))

    text = wait_for(lambda: ephemerals(fake_slack), what="the refusal")[0]
    assert text == (
        "`huge.png` is 60.0 MB; attachments may be at most 20.0 MB. "
        "Resize or compress it and attach it again."
    )
    assert fake_slack.calls_to("chat.postEphemeral")[0].args["user"] == USER
    assert not fake_slack.calls_to("download")
    assert not fake_slack.calls_to("chat.postMessage")  # no job card
    assert queued_jobs(settings, redis) == 0


def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_queued(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()
    pdf = fake_slack.host_file(
        name="brief.pdf", data=b"%PDF-1.7\n...", mimetype="application/pdf", filetype="pdf"
    )
    pdf["pretty_type"] = "PDF"

    slack.send.event(mention(text="a red fox", user=USER, channel=CHANNEL, files=[pdf]))

    text = wait_for(lambda: ephemerals(fake_slack), what="the refusal")[0]
    assert text.startswith("`brief.pdf` is a PDF I can't use; attach a PNG, JPEG or WebP image")
    assert not fake_slack.calls_to("download")
    assert queued_jobs(settings, redis) == 0


def test_a_file_named_png_that_is_not_one_is_refused_by_its_bytes(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()
    fake = fake_slack.host_file(
        name="photo.png", data=b"MZ\x90\x00 not a picture", mimetype="image/png", filetype="png"
    )

    slack.send.event(mention(text="a red fox", user=USER, channel=CHANNEL, files=[fake]))

    text = wait_for(lambda: ephemerals(fake_slack), what="the refusal")[0]
    assert (
        text == "`photo.png` is not an image Proofroom can read; attach a PNG, JPEG or WebP file."
    )
    assert fake_slack.calls_to("download")  # the bytes had to be looked at
    assert queued_jobs(settings, redis) == 0


def test_a_csv_reaches_the_core_as_text_csv(make_slack, fake_slack: FakeSlack) -> None:
    recorder: list[RecordingCore] = []
    slack = make_slack(core=lambda service: recorder.append(RecordingCore(service)) or recorder[0])
    rows = b"product,seed\nleather handbag,1\ncanvas tote,2\n"
    csv_file = fake_slack.host_file(
        name="batch.csv", data=rows, mimetype="text/csv", filetype="csv"
    )

    slack.send.event(mention(text="product-photo", user=USER, channel=CHANNEL, files=[csv_file]))

    command = wait_for(lambda: recorder[0].commands, what="the command at the core")[0]
    (attachment,) = command.attachments
    assert (attachment.content_type, attachment.read()) == ("text/csv", rows)


def test_a_mention_with_a_csv_starts_a_batch(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()
    rows = b"product,seed\nleather handbag,1\ncanvas tote,2\n"
    csv_file = fake_slack.host_file(
        name="batch.csv", data=rows, mimetype="text/csv", filetype="csv"
    )
    slack.send.event(
        mention(
            text="imagine batch product-photo --variations 2",
            user=USER,
            channel=CHANNEL,
            files=[csv_file],
        )
    )
    reply = wait_for(lambda: ephemerals(fake_slack), what="the reply")[0]
    assert reply.startswith("Queued batch `b"), reply
    assert "2 rows \u00d7 2 = 4 images on the bulk queue" in reply
    assert queued_jobs(settings, redis) == 2
