"""Fixtures of the security tests: the Slack and Discord harnesses (the real adapters against
the recording fakes of their Web APIs), the fake chat and the embedded worker."""

from __future__ import annotations

from tests.bot.adapters.discord.conftest import (  # noqa: F401
    discord_settings,
    fake_discord,
    make_bot,
)
from tests.bot.adapters.slack.conftest import fake_slack, make_slack, slack_settings  # noqa: F401
from tests.bot.conftest import bot_settings, chat, worker  # noqa: F401
