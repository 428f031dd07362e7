"""Gateway payloads as Discord sends them, and a harness that runs the real bot against them.

The bot is a real :class:`ProofroomDiscord` on an event loop of its own thread (as in
production, where the service's threads call into it). It logs in against
:class:`FakeDiscord` (``GET /users/@me``, application info, command sync), and gateway
dispatches are fed to discord.py's own parsers (``INTERACTION_CREATE``,
``MESSAGE_REACTION_ADD``, ``GUILD_CREATE``...), exactly what its websocket does with them.
Nothing connects to Discord.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.bot.adapters.discord import fake_discord
from tests.bot.adapters.discord.fake_discord import (
    APP_ID,
    BOT_ID,
    CHANNEL_ID,
    GUILD_ID,
    OWNER_ID,
    FakeDiscord,
    role,
    snowflake,
    text_channel,
)
from tests.waiting import wait_for  # noqa: F401 (re-exported to the tests here)

_ids = itertools.count(1)
_sequence = itertools.count(0x200001)  # above the ids FakeDiscord makes (from 1)
APPROVER_ROLE_ID = "1500000000000000001"
APPROVER_ROLE = "art-director"


def new_id() -> str:
    """A snowflake for a payload made here."""
    return snowflake(next(_sequence))


# ---- payloads ---------------------------------------------------------------------------------
def member(user_id: str, name: str, roles: list[str] = ()) -> dict[str, Any]:
    """A member as a gateway event carries it: with the member's channel permissions."""
    return {**fake_discord.member(user_id, name, roles), "permissions": "2248473465835073"}


def guild_create(*, roles: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """GUILD_CREATE, as sent after READY for each guild (no members: no members intent)."""
    return {
        "id": GUILD_ID,
        "name": "Studio",
        "icon": None,
        "owner_id": OWNER_ID,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": [role(GUILD_ID, "@everyone"), *roles],
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "system_channel_flags": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "member_count": 3,
        "large": False,
        "unavailable": False,
        "joined_at": "2024-01-01T00:00:00+00:00",
        "channels": [text_channel()],
        "threads": [],
        "members": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "stickers": [],
        "soundboard_sounds": [],
    }


def option(name: str, value: Any, *, focused: bool = False) -> dict[str, Any]:
    kinds = {str: 3, int: 4, bool: 5, float: 10}
    data: dict[str, Any] = {"name": name, "type": kinds[type(value)], "value": value}
    if focused:
        data["focused"] = True
    return data


def attachment_option(name: str, attachment: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": 11, "value": attachment["id"]}


def attachment(
    fake: FakeDiscord, *, filename: str, data: bytes, content_type: str, size: int | None = None
) -> dict[str, Any]:
    """An attachment a user put in a slash-command option, hosted by the fake's CDN."""
    url = fake.host(filename, data, content_type)
    return {
        "id": new_id(),
        "filename": filename,
        "size": len(data) if size is None else size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "ephemeral": True,
    }


def command_interaction(
    name: str,
    options: list[dict[str, Any]] = (),
    *,
    user_id: str,
    roles: list[str] = (),
    subcommand: str | None = None,
    attachments: list[dict[str, Any]] = (),
    channel: dict[str, Any] | None = None,
    focused: bool = False,
    size_limit: int = 10 * 1024 * 1024,
) -> dict[str, Any]:
    """INTERACTION_CREATE of a slash command (type 2), or its autocomplete (type 4)."""
    opts = list(options)
    if subcommand is not None:
        opts = [{"name": subcommand, "type": 1, "options": opts}]
    data: dict[str, Any] = {"id": new_id(), "name": name, "type": 1, "options": opts}
    if attachments:
        data["resolved"] = {"attachments": {a["id"]: a for a in attachments}}
    chan = channel or text_channel()
    return {
        "id": new_id(),
        "application_id": APP_ID,
        "type": 4 if focused else 2,
        "data": data,
        "guild_id": GUILD_ID,
        "guild": {"id": GUILD_ID, "locale": "en-US", "features": []},
        "channel_id": chan["id"],
        "channel": chan,
        "member": member(user_id, f"user{user_id[-3:]}", list(roles)),
        "token": f"interaction-token-{next(_ids)}",
        "version": 1,
        "app_permissions": "2248473465835073",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID},
        "context": 0,
        "attachment_size_limit": size_limit,
    }


def reaction(
    *,
    message_id: str,
    channel_id: str,
    user_id: str,
    emoji: str,
    roles: list[str] | None = (),
    added: bool = True,
) -> dict[str, Any]:
    """MESSAGE_REACTION_ADD (with the member, as Discord sends in guilds) or _REMOVE (without)."""
    data: dict[str, Any] = {
        "user_id": user_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "guild_id": GUILD_ID,
        "emoji": {"id": None, "name": emoji},
        "burst": False,
        "type": 0,
    }
    if added:
        data["message_author_id"] = BOT_ID
        data["burst_colors"] = []
        if roles is not None:
            data["member"] = member(user_id, f"user{user_id[-3:]}", list(roles))
    return data


__all__ = [
    "APPROVER_ROLE",
    "APPROVER_ROLE_ID",
    "BOT_ID",
    "CHANNEL_ID",
    "GUILD_ID",
    "attachment",
    "attachment_option",
    "command_interaction",
    "guild_create",
    "option",
    "reaction",
    "wait_for",
]
