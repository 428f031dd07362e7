"""Slack's delivery habits, on the real request path without a worker: re-delivered events,
channels the bot is not in, the Cancel button, rate limits."""

from __future__ import annotations

import time

import redis as redis_lib

from bot.adapters.slack.adapter import SlackChannelRefused
from engine.settings import Settings
from tests.bot.adapters.slack.conftest import wait_for
from tests.bot.adapters.slack.fake_slack import BOT_USER, FakeSlack
from tests.bot.adapters.slack.slack_requests import mention, reaction
from tests.bot.conftest import queued_jobs

USER = "UALICE"
CHANNEL = "CGENERAL"


def test_the_same_event_delivered_twice_yields_one_job(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()
    event = mention(text="a red fox --n 1", user=USER, channel=CHANNEL)

    first = slack.send.event(event, event_id="Ev0TWICE")
    # Slack did not see the answer in time and retries, with its retry headers.
    again = slack.send.event(event, event_id="Ev0TWICE", retry_num=1)

    assert (first.status, again.status) == (200, 200)
    wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"), what="the reply")
    time.sleep(0.5)  # room for a second job, were the retry handled
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # one job card
    assert len(fake_slack.calls_to("chat.postEphemeral")) == 1
    assert queued_jobs(settings, redis) == 1
    # A different event with the same content is a new request.
    slack.send.event(event, event_id="Ev0OTHER")
    wait_for(lambda: queued_jobs(settings, redis) == 2, what="the second job")


def test_imagine_where_the_bot_is_not_a_member_says_how_to_invite_it(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    fake_slack.fail("chat.postMessage", "not_in_channel")
    slack = make_slack()

    sent = slack.send.command("a red fox", channel="CPRIVATE")

    assert sent.status == 200
    reply = wait_for(lambda: fake_slack.calls_to("response"), what="the reply")[0].args
    assert reply["response_type"] == "ephemeral"  # only the requester sees it
    assert reply["text"] == (
        "I'm not a member of <#CPRIVATE>, so I can't post there. Invite me with "
        "`/invite @proofroom` in that channel and try again."
    )
    assert queued_jobs(settings, redis) == 0


def test_the_cancel_button_cancels_the_job(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis: redis_lib.Redis
) -> None:
    slack = make_slack()  # no worker: the job stays queued
    slack.send.command("a red fox --n 1", user=USER)
    reply = wait_for(lambda: fake_slack.calls_to("response"), what="the reply")[0].args["text"]
    job_id = reply.split("`")[1]
    card = fake_slack.calls_to("chat.postMessage")[0]

    clicked = slack.send.block_action(
        action_id="proofroom_cancel",
        value=job_id,
        user=USER,
        channel=CHANNEL,
        message_ts=card.response["ts"],
    )

    assert clicked.status == 200 and clicked.elapsed_s < 3
    answer = wait_for(lambda: fake_slack.calls_to("response")[1:], what="the answer")[0].args
    assert answer["text"] == f"Cancelling job `{job_id}`; its thread will say when it has stopped."
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert slack.queue.is_cancelled(job_id)


def test_someone_elses_cancel_click_is_refused_by_the_core(
    make_slack, fake_slack: FakeSlack
) -> None:
    slack = make_slack()
    slack.send.command("a red fox --n 1", user=USER)
    job_id = wait_for(lambda: fake_slack.calls_to("response"))[0].args["text"].split("`")[1]

    slack.send.block_action(
        action_id="proofroom_cancel",
        value=job_id,
        user="UMALLORY",
        channel=CHANNEL,
        message_ts="1.2",
    )

    answer = wait_for(lambda: fake_slack.calls_to("response")[1:])[0].args["text"]
    assert answer.startswith(f"You have no job `{job_id}`")
    assert not slack.queue.is_cancelled(job_id)


def test_a_rate_limited_post_is_retried_after_retry_after(
    make_slack, fake_slack: FakeSlack
) -> None:
    fake_slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    slack = make_slack()

    started = time.monotonic()
    slack.send.command("a red fox --n 1", user=USER)
    reply = wait_for(lambda: fake_slack.calls_to("response"), what="the reply")[0].args["text"]

    assert reply.startswith("Queued job"), reply
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [429, 200]
    assert time.monotonic() - started >= 1  # it waited as told


def test_the_bots_own_reactions_and_other_items_are_ignored(
    make_slack, fake_slack: FakeSlack
) -> None:
    slack = make_slack()
    own = reaction(name="white_check_mark", user=BOT_USER, channel=CHANNEL, ts="1.1")
    on_file = reaction(name="white_check_mark", user=USER, channel=CHANNEL, ts="1.1")
    on_file["item"] = {"type": "file", "file": "F1"}

    assert slack.send.event(own).status == 200
    assert slack.send.event(on_file).status == 200
    time.sleep(0.3)
    assert [c.method for c in fake_slack.calls] == ["auth.test"]


def test_an_upload_into_a_channel_the_bot_left_raises_a_sentence(make_slack, fake_slack) -> None:
    slack = make_slack()
    fake_slack.fail("files.completeUploadExternal", "not_in_channel")
    try:
        slack.runtime.adapter.upload(
            channel="CGONE", thread="1.1", data=b"x", filename="a.png", text="t"
        )
    except SlackChannelRefused as exc:
        assert exc.error == "not_in_channel"
        assert "`/invite @proofroom`" in exc.message
    else:
        raise AssertionError("no SlackChannelRefused")
