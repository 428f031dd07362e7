"""``proofroom slack``: arguments, missing credentials, and Socket Mode over a real
WebSocket (envelopes arrive unsigned and are acknowledged one by one; bolt mirrors Slack's
retry number into a header, so a retried event is dropped)."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from bot.adapters.slack import cli as slack_cli
from bot.adapters.slack.cli import SlackRuntime
from bot.adapters.slack.settings import SlackSettings
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.adapters.slack.conftest import wait_for
from tests.bot.adapters.slack.fake_slack import TEAM, FakeSlack
from tests.bot.adapters.slack.fake_socket import FakeSocketMode
from tests.bot.adapters.slack.slack_requests import mention
from tests.bot.conftest import queued_jobs


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
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    argv: tuple[str, ...],
    missing: str,
) -> None:
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


@pytest.fixture()
def socket_mode(fake_slack: FakeSlack) -> Iterator[FakeSocketMode]:
    server = FakeSocketMode().start()
    fake_slack.socket_url = server.url
    yield server
    server.stop()


def envelope(envelope_id: str, payload: dict, *, retry: int = 0) -> dict:
    """An Events API envelope as Slack pushes it over the socket."""
    return {
        "envelope_id": envelope_id,
        "type": "events_api",
        "payload": payload,
        "accepts_response_payload": False,
        "retry_attempt": retry,
        "retry_reason": "timeout" if retry else "",
    }


def test_socket_mode_acks_each_envelope_over_the_websocket_and_drops_retries(
    fake_slack: FakeSlack,
    socket_mode: FakeSocketMode,
    socket_slack_settings: SlackSettings,
    settings: Settings,
    bot_settings: BotSettings,
    redis: redis_lib.Redis,
) -> None:
    runtime = SlackRuntime(
        settings=settings,
        slack_settings=socket_slack_settings,
        bot_settings=bot_settings,
        redis=redis,
        socket_mode=True,
    )
    handler = slack_cli.socket_mode_handler(runtime, slack_settings=socket_slack_settings)
    handler.connect()  # what `proofroom slack` starts: apps.connections.open, then the socket
    try:
        socket_mode.wait_connected()
        [opened] = fake_slack.calls_to("apps.connections.open")
        assert opened.token == fake_slack.app_token  # the xapp- token, not the bot's
        payload = {
            "type": "event_callback",
            "team_id": TEAM,
            "event_id": "Ev0SOCKET",
            "event": mention(text="a red fox --n 1", user="UALICE", channel="CGENERAL"),
        }

        socket_mode.send(envelope("env-1", payload))
        assert wait_for(lambda: socket_mode.acks("env-1"), what="the ack") == [
            {"envelope_id": "env-1"}
        ]
        wait_for(lambda: fake_slack.calls_to("chat.postEphemeral"), what="the reply")
        # Slack pushes an event again when it thinks the ack was late: acked, not re-run.
        socket_mode.send(envelope("env-2", payload, retry=1))
        wait_for(lambda: socket_mode.acks("env-2"), what="the ack of the retry")
        time.sleep(0.3)
        assert queued_jobs(settings, redis) == 1
        assert len(fake_slack.calls_to("chat.postEphemeral")) == 1
    finally:
        handler.close()
