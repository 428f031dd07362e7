"""``proofroom discord``: run the bot on Discord; ``proofroom discord invite-url``: print the
link that adds it to a server with exactly the permissions it uses.

Permissions, each for one thing the bot does (nothing else is asked for):

- View Channel: see the channel the command ran in; without it the gateway sends no
  reaction events from there.
- Send Messages: post the job's first message in the channel (the thread starts from it).
- Create Public Threads: start the job's thread from that message.
- Send Messages in Threads: progress, images and failures go into the thread.
- Attach Files: one image per message.
- Add Reactions and Read Message History: put ✅ ❌ 🔁 under each image so that a vote is one
  click (Discord requires both to react); left out with ``--no-reactions`` /
  ``PROOFROOM_DISCORD_SEED_REACTIONS=false``, and people then add the emoji themselves.

Not needed: Message Content (slash commands carry their options), Embed Links (plain text),
Manage Threads (a message in an archived thread reopens it), Mention Everyone.
"""

from __future__ import annotations

import argparse
import logging
import sys

import aiohttp
import discord
import redis as redis_lib

from bot.adapters.discord.app import ProofroomDiscord
from bot.adapters.discord.settings import DiscordSettings
from bot.service import BotService
from bot.settings import BotSettings
from engine.embedded import chat_redis_or_none, worker_if_needed
from engine.model_folders import load_catalog
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

SCOPES = ("bot", "applications.commands")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``proofroom discord``."""
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "invite-url"),
        default="run",
        help="run the bot (default), or print the URL that adds it to a server",
    )
    parser.add_argument(
        "--application-id",
        type=int,
        help="invite-url: the application's id (default: DISCORD_APPLICATION_ID)",
    )
    parser.add_argument(
        "--no-reactions",
        action="store_true",
        help="do not put vote reactions under images (drops two permissions)",
    )
    parser.add_argument(
        "--embedded-worker",
        action="store_true",
        help="also render in this process (automatic without REDIS_URL)",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``proofroom discord``."""
    discord_settings = DiscordSettings()
    if args.no_reactions:
        discord_settings = discord_settings.model_copy(update={"seed_reactions": False})
    if args.action == "invite-url":
        app_id = args.application_id or discord_settings.application_id
        if app_id is None:
            print(
                "give the application id: --application-id or DISCORD_APPLICATION_ID "
                "(developer portal > your application > General Information)",
                file=sys.stderr,
            )
            return 2
        print(invite_url(application_id=app_id, seed_reactions=discord_settings.seed_reactions))
        return 0
    return serve(discord_settings=discord_settings, embedded_worker=args.embedded_worker)


def serve(*, discord_settings: DiscordSettings, embedded_worker: bool) -> int:
    """Run the bot until interrupted (Ctrl-C closes the connection and stops the pump)."""
    try:  # name the missing variable before anything starts
        token = discord_settings.secret_token()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    settings = get_settings()
    store = chat_redis_or_none(settings)  # REDIS_URL, the data folder's redis-server, or memory
    if store is None:
        return 2
    redis = store.client
    client = build_bot(
        settings=settings,
        discord_settings=discord_settings,
        bot_settings=BotSettings(),
        redis=redis,
    )
    with store, worker_if_needed(settings=settings, redis=redis, wanted=embedded_worker):
        # log_handler=None: `proofroom` already configured logging. The token is never logged.
        try:
            client.run(token, log_handler=None)
        except discord.LoginFailure:  # Discord answered 401 to the login
            log.error("Discord refused DISCORD_TOKEN; copy the bot token again (docs/discord.md)")
            return 2
        except (aiohttp.ClientConnectionError, OSError) as exc:  # before the first answer
            log.error("cannot reach Discord (%s); check the network or proxy", exc)
            return 2
    return 0


def build_bot(
    *,
    settings: Settings,
    discord_settings: DiscordSettings,
    bot_settings: BotSettings,
    redis: redis_lib.Redis,
) -> ProofroomDiscord:
    """The Discord client with the service bound to its adapter. Discord approver roles
    (``PROOFROOM_DISCORD_APPROVER_ROLES``, names or ids) join the core's approver roles."""
    if discord_settings.approver_roles:
        roles = bot_settings.approver_roles | frozenset(discord_settings.approver_roles)
        bot_settings = bot_settings.model_copy(update={"approver_roles": roles})
    catalog = load_catalog(settings)
    client = ProofroomDiscord(settings=discord_settings, catalog=catalog, limits=settings.limits)
    client.bind(
        BotService.build(
            adapter=client.adapter,
            settings=settings,
            bot_settings=bot_settings,
            redis=redis,
            catalog=catalog,
        )
    )
    return client


def permissions(*, seed_reactions: bool = True) -> discord.Permissions:
    """The permissions the bot uses (see the module docstring for why each)."""
    perms = discord.Permissions(
        view_channel=True,
        send_messages=True,
        create_public_threads=True,
        send_messages_in_threads=True,
        attach_files=True,
    )
    if seed_reactions:
        perms.update(add_reactions=True, read_message_history=True)
    return perms


def invite_url(*, application_id: int, seed_reactions: bool = True) -> str:
    """The OAuth2 URL that adds the bot with scopes ``bot applications.commands``."""
    return discord.utils.oauth_url(
        application_id, permissions=permissions(seed_reactions=seed_reactions), scopes=SCOPES
    )
