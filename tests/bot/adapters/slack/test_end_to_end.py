"""``/imagine`` on Slack end to end on the ``tiny`` model: signed requests into the real Bolt
app over HTTP, the real service, queue and an embedded RQ worker on the real Redis; only the
Slack Web API is the local fake.

/imagine -> ack within 3 s -> job card -> progress message edited in place -> one upload per
image into the thread (through a 429 that is waited out) -> ✅ on an image -> export file.
"""

from __future__ import annotations

import pytest

from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.adapters.slack.conftest import wait_for
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import reaction

pytestmark = pytest.mark.slow

CHANNEL = "CGENERAL"
REQUESTER = "UALICE"
REVIEWER = "UBOB"
JOB_TIMEOUT = 120  # a cold tiny model on two CPU cores


def test_imagine_to_export(
    make_slack, fake_slack: FakeSlack, worker, settings: Settings, bot_settings: BotSettings
) -> None:
    fake = fake_slack
    fake.share_visible_after = 2  # Slack reports a file's message a moment after the upload
    fake.rate_limit("files.getUploadURLExternal", times=1, retry_after=1)
    slack = make_slack(pump=True)

    sent = slack.send.command("a red fox in the snow --n 2 --steps 2 --seed 7", user=REQUESTER)

    # Acknowledged within Slack's 3 s, with an empty body: the reply comes separately.
    assert sent.status == 200
    assert sent.elapsed_s < 3, sent.elapsed_s
    assert sent.body == ""
    reply = wait_for(lambda: fake.calls_to("response"), what="the command's reply")[0].args
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("Queued job `"), reply["text"]
    job_id = reply["text"].split("`")[1]

    # The job card opens the thread in the channel, posted with the bot token.
    card = fake.calls_to("chat.postMessage")[0]
    assert card.args["channel"] == CHANNEL and "thread_ts" not in card.args
    assert job_id in card.args["text"]
    assert card.token == fake.bot_token
    thread = card.response["ts"]

    # Two images, each its own message in the thread, despite one 429 on the way.
    images = wait_for(
        lambda: len(fake.shared_files(thread=thread)) == 2 and fake.shared_files(thread=thread),
        timeout=JOB_TIMEOUT,
        what="two images in the thread",
    )
    assert [c.status for c in fake.calls_to("files.getUploadURLExternal")][:2] == [429, 200]
    assert len(fake.calls_to("upload")) == 2  # the bytes went up once per image
    assert all(image["data"].startswith(b"\x89PNG") for image in images)
    assert [image["initial_comment"].split(" \u00b7 ")[0] for image in images] == [
        "Image 1/2",
        "Image 2/2",
    ]
    assert len({image["ts"] for image in images}) == 2

    # Progress: one message in the thread, edited in place (chat.update on its ts only).
    progress = [c for c in fake.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread][
        0
    ]
    done = wait_for(
        lambda: [c for c in fake.calls_to("chat.update") if "Done" in c.args["text"]],
        what="the final progress edit",
    )
    edits = fake.calls_to("chat.update")
    assert {e.args["ts"] for e in edits} == {progress.response["ts"]}
    assert done[-1].args["channel"] == CHANNEL

    # ✅ from a teammate on the first image: approved and exported.
    accepted = slack.send.event(
        reaction(name="white_check_mark", user=REVIEWER, channel=CHANNEL, ts=images[0]["ts"])
    )
    assert accepted.status == 200
    export_dir = bot_settings.export_path(settings)
    exported = wait_for(lambda: sorted(export_dir.glob("*.png")), what="the exported PNG")
    assert len(exported) == 1
    said = wait_for(
        lambda: [c for c in fake.calls_to("chat.postMessage") if "approved" in c.args["text"]],
        what="the approval line in the thread",
    )
    assert said[0].args["thread_ts"] == thread
