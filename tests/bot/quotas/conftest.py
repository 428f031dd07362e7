"""Fixtures of the quota tests: a fake chat without a worker (refusals happen before anything
is queued, and accepted jobs stay in line, which is what the in-flight caps count)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib

from bot.quotas.policy import Quotas
from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from engine.settings import Settings

# The platforms' fakes and harnesses, for the allow-list tests through each real entry point.
from tests.bot.adapters.discord.conftest import (  # noqa: F401
    discord_settings,
    fake_discord,
    make_bot,
)
from tests.bot.adapters.slack.conftest import fake_slack, make_slack, slack_settings  # noqa: F401


@pytest.fixture()
def quiet_chat(settings: Settings, redis: redis_lib.Redis) -> Iterator[Callable[..., FakeChat]]:
    """Makes a :class:`FakeChat` (no worker) with ``quotas`` and other bot settings."""
    made: list[FakeChat] = []

    def make(*, quotas: dict[str, int] | None = None, **bot: Any) -> FakeChat:
        bot_settings = BotSettings(  # type: ignore[call-arg]
            _env_file=None,
            export_dir=settings.data_dir / "approved",
            quotas=Quotas(**(quotas or {})),
            **bot,
        )
        chat = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings, worker=False)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        chat.close()
