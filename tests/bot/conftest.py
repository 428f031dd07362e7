"""Fixtures of the bot tests: the ``chat`` conversation (see ``bot.pytest_plugin``)."""

from bot.pytest_plugin import bot_settings, chat  # noqa: F401
