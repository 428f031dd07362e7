"""The Discord tests' fixtures (the fake API, the logged-in bot, approval by role)."""

from tests.bot.adapters.discord.conftest import (  # noqa: F401
    bot_settings,
    discord_settings,
    fake_discord,
    make_bot,
    service_factory,
)
