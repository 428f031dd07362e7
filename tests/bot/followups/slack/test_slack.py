"""🔀 and ⬆️ on Slack: signed events into the real Bolt app, the real service, queue and an
embedded worker on ``tiny``; only the Slack Web API is the local fake."""

from __future__ import annotations

import pytest

from tests.bot.adapters.slack.conftest import wait_for
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import reaction
from tests.bot.followups.helpers import job_id_in

pytestmark = pytest.mark.slow

CHANNEL = "CGENERAL"
REQUESTER = "UALICE"
JOB_TIMEOUT = 120


def posted(fake: FakeSlack, thread: str, start: str) -> list[str]:
    return [
        c.args["text"]
        for c in fake.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == thread and c.args["text"].startswith(start)
    ]


def test_vary_and_upscale_reactions_on_slack(make_slack, fake_slack: FakeSlack, worker) -> None:
    fake = fake_slack
    slack = make_slack(pump=True)
    slack.send.command("a lighthouse on a cliff --n 1 --seed 7", user=REQUESTER)
    reply = wait_for(lambda: fake.calls_to("response"), what="the reply")[0].args["text"]
    job_id = job_id_in(reply)
    thread = fake.calls_to("chat.postMessage")[0].response["ts"]
    [image] = wait_for(
        lambda: fake.shared_files(thread=thread), timeout=JOB_TIMEOUT, what="the image"
    )

    # 🔀 by its Slack name, delivered twice (Slack's retry after a slow ack): one job.
    vary = reaction(
        name="twisted_rightwards_arrows", user=REQUESTER, channel=CHANNEL, ts=image["ts"]
    )
    assert slack.send.event(vary, event_id="EvVARY").status == 200
    assert slack.send.event(vary, event_id="EvVARY", retry_num=1).status == 200
    files = wait_for(
        lambda: len(fake.shared_files(thread=thread)) == 5 and fake.shared_files(thread=thread),
        timeout=JOB_TIMEOUT,
        what="four variations in the thread",
    )
    assert [f["initial_comment"].split(" \u00b7 ")[0] for f in files[1:]] == [
        f"Variation {k}/4 of image 1" for k in range(1, 5)
    ]
    cards = posted(fake, thread, "\U0001f500 Variations of image 1 (subtle)")
    assert len(cards) == 1
    variation = slack.runtime.service.queue.spec(job_id_in(cards[0]))
    assert variation is not None and variation.parent == f"{job_id}/0"  # it has rendered
    assert variation.strength == 0.35

    # ⬆️ as Slack names it: an upscale opens in the same thread.
    up = reaction(name="arrow_up", user=REQUESTER, channel=CHANNEL, ts=image["ts"])
    assert slack.send.event(up).status == 200
    [upscale] = wait_for(
        lambda: posted(fake, thread, "\u2b06\ufe0f Upscaling image 1 2x to 128x128"),
        what="the upscale card",
    )
    queue = slack.runtime.service.queue
    spec = wait_for(lambda: queue.spec(job_id_in(upscale)), what="the upscale queued")
    assert (spec.scale, spec.tile_size) == (2, 64)

    # The command form, in the image's channel.
    slack.send.command(f"vary {job_id}#1 --strong --n 1", user=REQUESTER)
    answer = wait_for(
        lambda: [c for c in fake.calls_to("response") if "variation(s)" in c.args["text"]],
        what="the vary command's reply",
    )[0].args["text"]
    assert "1 variation(s) (strong) of image 1" in answer
