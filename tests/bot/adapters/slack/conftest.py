"""Fixtures of the Slack tests: the recording fake Web API, and the real bot (``SlackRuntime``:
adapter, service, Bolt app) served over HTTP on 127.0.0.1 by ``proofroom serve``'s service
(``bot.serve``: uvicorn in a thread), fed signed requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from pydantic import SecretStr

from bot.adapters.slack.app import Core
from bot.adapters.slack.cli import SlackRuntime
from bot.adapters.slack.settings import SlackSettings
from bot.ports import CommandEvent, ReactionEvent
from bot.serve.service import HttpService
from bot.service import BotService
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import SlackSender
from tests.waiting import wait_for  # noqa: F401 (re-exported to the tests here)

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture()
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture()
def slack_settings(fake_slack: FakeSlack) -> SlackSettings:
    return SlackSettings(
        _env_file=None,  # type: ignore[call-arg]  # this test's values only
        bot_token=fake_slack.bot_token,
        signing_secret=SIGNING_SECRET,
        api_url=fake_slack.api_url,
        share_wait_s=3.0,
        update_interval_s=0.0,
        max_intake_bytes=20 * 1024 * 1024,
    )


@pytest.fixture()
def socket_slack_settings(fake_slack: FakeSlack, slack_settings: SlackSettings) -> SlackSettings:
    """``slack_settings`` for Socket Mode: an app token, no signing secret."""
    return slack_settings.model_copy(
        update={"signing_secret": None, "app_token": SecretStr(fake_slack.app_token)}
    )


class SlackHarness:
    """The bot as deployed in HTTP mode, and a sender of signed requests to it."""

    def __init__(self, *, runtime: SlackRuntime, fake: FakeSlack) -> None:
        self.runtime = runtime
        self.fake = fake
        self.service = serve(runtime).start(pump=False)  # the pump is the fixture's choice
        assert self.service.slack_url is not None
        self.send = SlackSender(
            url=self.service.slack_url,
            signing_secret=SIGNING_SECRET,
            response_url=fake.response_url,
        )

    @property
    def queue(self):
        return self.runtime.service.queue

    def close(self) -> None:
        self.service.close()  # the server, then the runtime's work and pump


def serve(runtime: SlackRuntime) -> HttpService:
    """The HTTP service for ``runtime`` on a free port of 127.0.0.1, bound (connections wait
    in its backlog) but not serving until ``start()``."""
    return HttpService(
        settings=runtime.settings,
        redis=runtime.redis,
        host="127.0.0.1",
        port=0,
        slack=runtime,
        slack_path="/slack/events",
    )


@pytest.fixture()
def make_slack(
    fake_slack: FakeSlack,
    slack_settings: SlackSettings,
    settings: Settings,
    bot_settings: BotSettings,
    redis: redis_lib.Redis,
) -> Iterator[Callable[..., SlackHarness]]:
    """Build (and afterwards close) the bot; ``pump=True`` also runs the event pump, and
    ``core=`` puts a recording core (made from the service) between the app and the service."""
    made: list[SlackHarness] = []

    def make(
        *,
        pump: bool = False,
        core: Callable[[BotService], Core] | None = None,
        **overrides: Any,
    ) -> SlackHarness:
        runtime = SlackRuntime(
            settings=settings,
            slack_settings=overrides.pop("slack_settings", slack_settings),
            bot_settings=overrides.pop("bot_settings", bot_settings),
            redis=redis,
            socket_mode=False,
            pump_block_ms=100,
            core=core,
        )
        if pump:
            runtime.start_pump()
        harness = SlackHarness(runtime=runtime, fake=fake_slack)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


class RecordingCore:
    """Passes every call to the real service and keeps the events it was given."""

    def __init__(self, service: BotService) -> None:
        self.service = service
        self.commands: list[CommandEvent] = []

    def handle_command(self, event: CommandEvent) -> str:
        self.commands.append(event)
        return self.service.handle_command(event)

    def handle_reaction(self, event: ReactionEvent) -> None:
        self.service.handle_reaction(event)
