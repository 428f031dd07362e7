"""The real bot on dpytest (``discord.ext.test``), for the paths dpytest supports.

dpytest swaps discord.py's HTTP client and state for an in-memory Discord: channel
messages and their edits, attachments (files on disk behind ``file://`` URLs) and
reactions, each reported back through discord.py's own gateway parsers
(``MESSAGE_CREATE``, ``MESSAGE_REACTION_ADD``...). Application commands and threads are
outside it; those paths are tested against the local REST fake (``fake_discord``).

Two gaps of dpytest 0.7.0 (its latest release) are filled here, each the way Discord
itself behaves, so that the adapter's real calls run unchanged:

- Reaction payloads lack ``type``, which Discord has sent since burst reactions and
  discord.py 2.4 requires (dpytest issue #129): it is added as 0, a normal reaction.
- Starting a thread from a message is not implemented: here it makes the thread Discord
  would (the message's id, the channel as parent), reports it through discord.py's
  ``THREAD_CREATE`` parser, and answers a second start with Discord's error 160004.

dpytest keeps members in discord.py's member cache, which needs the members intent; the
bot runs without it in production (its roles come with each event or from the API).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import discord
from discord.ext.test.backend import FakeHttp, FakeRequest
from discord.ext.test.state import FakeState
from discord.state import ConnectionState

from bot.adapters.discord.adapter import THREAD_EXISTS
from bot.adapters.discord.app import needed_intents


def patch_dpytest(monkeypatch: Any) -> None:
    """Fill dpytest's two gaps (see the module docstring) for one test."""
    monkeypatch.setattr(FakeHttp, "start_thread_with_message", _start_thread_with_message)
    for name in ("parse_message_reaction_add", "parse_message_reaction_remove"):
        monkeypatch.setattr(FakeState, name, _with_reaction_type(getattr(ConnectionState, name)))


def members_intents() -> discord.Intents:
    """The bot's own intents plus members, which dpytest's member cache needs."""
    intents = needed_intents()
    intents.members = True
    return intents


async def _start_thread_with_message(
    self: FakeHttp, channel_id: int, message_id: int, *, name: str, **_: Any
) -> dict[str, Any]:
    """What Discord does for ``POST /channels/{c}/messages/{m}/threads``."""
    state = self.state
    channel = state.get_channel(int(channel_id))
    if not isinstance(channel, discord.TextChannel):
        raise discord.NotFound(
            FakeRequest(404, "Not Found"), {"code": 10003, "message": "Unknown Channel"}
        )
    if channel.guild.get_thread(int(message_id)) is not None:
        raise discord.HTTPException(
            FakeRequest(400, "Bad Request"),
            {
                "code": THREAD_EXISTS,
                "message": "A thread has already been created for this message",
            },
        )
    data = {
        "id": str(message_id),
        "type": discord.ChannelType.public_thread.value,
        "guild_id": str(channel.guild.id),
        "parent_id": str(channel.id),
        "owner_id": str(state.self_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "newly_created": True,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2024-01-01T00:00:00+00:00",
            "locked": False,
        },
    }
    state.parse_thread_create(data)
    return data


def _with_reaction_type(parse: Callable[[Any, dict[str, Any]], None]):
    def parse_with_type(self: FakeState, data: dict[str, Any]) -> None:
        parse(self, {"type": 0, **data})

    return parse_with_type


def messages_in(client: discord.Client, channel_id: int | str) -> list[discord.Message]:
    """The messages discord.py has seen in a channel or thread, oldest first."""
    return [m for m in client.cached_messages if m.channel.id == int(channel_id)]
