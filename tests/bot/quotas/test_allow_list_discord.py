"""The allow list on Discord: INTERACTION_CREATE payloads into the real bot logged in against
the fake REST API; the list may name the channel or the whole server (guild)."""

from __future__ import annotations

from bot.service import BotService
from bot.settings import BotSettings
from tests.bot.adapters.discord.fake_discord import CHANNEL_ID, GUILD_ID
from tests.bot.adapters.discord.gateway import command_interaction

USER = "1600000000000000001"


def ask_help(make_bot, settings, redis, allowed: set[str]) -> str:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        allowed_channels=frozenset(allowed),
    )
    bot = make_bot(
        service_factory=lambda adapter: BotService.build(
            adapter=adapter, settings=settings, bot_settings=bot_settings, redis=redis
        )
    )
    interaction = command_interaction("proofroom", [], subcommand="help", user_id=USER)
    bot.dispatch("INTERACTION_CREATE", interaction)
    return bot.reply_to(interaction)


def test_discord_answers_in_an_allowed_channel_or_server_only(
    make_bot, settings, redis, fake_discord
) -> None:
    refused = ask_help(make_bot, settings, redis, {"1300000000000000999"})
    assert refused.startswith(f"Proofroom does not work in this channel (`{CHANNEL_ID}`)")
    assert "--seed" in ask_help(make_bot, settings, redis, {CHANNEL_ID})
    assert "--seed" in ask_help(make_bot, settings, redis, {GUILD_ID})
    assert not fake_discord.channel_posts()
