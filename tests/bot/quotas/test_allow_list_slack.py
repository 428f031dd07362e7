"""The allow list on Slack: signed ``/imagine`` requests to the real Bolt app over HTTP (the
recording fake Web API behind it); a channel id not on the list gets the sentence, ephemeral."""

from __future__ import annotations

from bot.settings import BotSettings
from tests.waiting import wait_for


def test_slack_answers_in_allowed_channels_only(make_slack, settings) -> None:
    allowed = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        allowed_channels=frozenset({"CGENERAL"}),
    )
    slack = make_slack(bot_settings=allowed)
    assert slack.send.command("help", channel="CRANDOM").status == 200
    [refused] = wait_for(lambda: slack.fake.calls_to("response"), what="the refusal")
    assert refused.args["response_type"] == "ephemeral"
    assert refused.args["text"].startswith(
        "Proofroom does not work in this channel (`CRANDOM`). Ask an admin"
    )
    assert slack.send.command("help", channel="CGENERAL").status == 200
    answers = wait_for(
        lambda: (calls := slack.fake.calls_to("response"))[1:] and calls, what="the answer"
    )
    assert "/imagine" in answers[1].args["text"]
    assert not slack.fake.calls_to("chat.postMessage")
