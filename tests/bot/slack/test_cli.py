"""``proofroom slack``: arguments, missing credentials, and the Socket Mode request path
(envelopes arrive unsigned; bolt mirrors Slack's retry number into a header)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pytest
import redis as redis_lib
from slack_bolt.request import BoltRequest

from bot.adapters import slack_cli
from bot.adapters.slack_cli import SlackRuntime
from bot.adapters.slack_settings import SlackSettings
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.slack.conftest import queued_jobs, wait_for
from tests.bot.slack.fake_slack import TEAM, FakeSlack
from tests.bot.slack.slack_requests import mention


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    slack_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_arguments() -> None:
    assert parse().http is False
    args = parse("--http", "--port", "8080")
    assert (args.http, args.port) == (True, 8080)


@pytest.mark.parametrize(
    ("argv", "missing"),
    [((), "SLACK_APP_TOKEN"), (("--http",), "SLACK_SIGNING_SECRET")],
)
def test_a_missing_credential_is_named_and_nothing_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    argv: tuple[str, ...], missing: str,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-value")
    with caplog.at_level(logging.ERROR):
        assert slack_cli.run(parse(*argv)) == 2
    assert missing in caplog.text
    assert "xoxb-secret-value" not in caplog.text


def test_secrets_are_not_shown() -> None:
    shown = repr(SlackSettings(_env_file=None, bot_token="xoxb-1", signing_secret="s3cret"))  # type: ignore[call-arg]
    assert "xoxb-1" not in shown and "s3cret" not in shown


def test_socket_mode_envelopes_reach_the_core_and_retries_are_dropped(
    fake_slack: FakeSlack, slack_settings: SlackSettings, settings: Settings,
    bot_settings: BotSettings, redis: redis_lib.Redis,
) -> None:  # fmt: skip
    socket_settings = slack_settings.model_copy(update={"signing_secret": None})
    runtime = SlackRuntime(settings=settings, slack_settings=socket_settings,
                           bot_settings=bot_settings, redis=redis, socket_mode=True)  # fmt: skip
    payload = {
        "type": "event_callback", "team_id": TEAM, "event_id": "Ev0SOCKET",
        "event": mention(text="a red fox --n 1", user="UALICE", channel="CGENERAL"),
    }  # fmt: skip

    first = runtime.app.dispatch(BoltRequest(mode="socket_mode", body=payload))
    retry = runtime.app.dispatch(
        BoltRequest(mode="socket_mode", body=payload, headers={"x-slack-retry-num": "1"})
    )

    assert (first.status, retry.status) == (200, 200)
    wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"), what="the reply")
    time.sleep(0.3)
    assert queued_jobs(settings, redis) == 1
