"""The Bolt app on its real request path: signed HTTP requests to a local server.

Slack signs every request (HMAC-SHA256 of ``v0:{timestamp}:{body}``); a wrong signature or
a timestamp more than five minutes old must be refused with 401 before anything happens.
"""

from __future__ import annotations

import time

from tests.bot.adapters.slack.conftest import wait_for
from tests.bot.adapters.slack.slack_requests import mention


def test_a_signed_command_is_acknowledged_at_once(make_slack) -> None:
    slack = make_slack()
    sent = slack.send.command("help")
    assert sent.status == 200
    assert sent.elapsed_s < 3
    reply = wait_for(lambda: slack.fake.calls_to("response"), what="the reply")[0]
    assert reply.args["response_type"] == "ephemeral"
    assert "/imagine" in reply.args["text"]


def test_a_wrong_signature_is_refused_with_401(make_slack) -> None:
    slack = make_slack()
    sent = slack.send.command("help", signature="v0=" + "0" * 64)
    assert sent.status == 401
    event = slack.send.event(
        mention(text="a fox", user="UALICE", channel="CGENERAL"), signature="v0=deadbeef"
    )
    assert event.status == 401
    time.sleep(0.3)
    assert not slack.fake.calls_to("response")
    assert not slack.fake.calls_to("chat.postMessage")


def test_a_timestamp_older_than_five_minutes_is_refused_with_401(make_slack) -> None:
    slack = make_slack()
    # Correctly signed, but replayed six minutes later.
    sent = slack.send.command("help", timestamp=int(time.time()) - 6 * 60)
    assert sent.status == 401
    time.sleep(0.3)
    assert not slack.fake.calls_to("response")
