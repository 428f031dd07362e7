"""Discord: the adapter over the REST API, the ``discord.Client`` app with its commands, who
and where (``directory``), text as Discord shows it, settings, and ``proofroom discord``
(``cli``)."""

from bot.adapters.discord.adapter import DiscordAdapter
from bot.adapters.discord.app import ProofroomDiscord
from bot.adapters.discord.settings import DiscordSettings

__all__ = ["DiscordAdapter", "DiscordSettings", "ProofroomDiscord"]
