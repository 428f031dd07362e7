"""Who and where on Discord, for the adapter: the channel a thread lives in, and a member's
roles by id and by name. Caches only: Discord is the truth (a thread's parent and a member's
roles can be fetched), so a restart loses nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord

log = logging.getLogger(__name__)


class DiscordDirectory:
    """Thread parents and member roles, from the gateway's cache, else the API."""

    def __init__(self, *, client: discord.Client) -> None:
        self._client = client
        self._threads: dict[str, str] = {}  # thread id -> parent channel id
        self._role_names: dict[int, dict[str, str]] = {}  # guild -> role id -> name

    def note_thread(self, *, thread: str, parent: str) -> None:
        """Record that ``thread`` lives in ``parent`` (an interaction's channel, a thread
        this bot started)."""
        self._threads[thread] = parent

    def known_parent(self, thread: str) -> str | None:
        """The recorded parent of ``thread``, without asking Discord."""
        return self._threads.get(thread)

    async def thread_parent(self, channel_id: str) -> str | None:
        """The parent channel of ``channel_id`` when it is a thread, else None."""
        if channel_id in self._threads:
            return self._threads[channel_id]
        channel = self._client.get_channel(int(channel_id))
        if channel is None:
            try:
                channel = await self._client.fetch_channel(int(channel_id))
            except discord.HTTPException:
                log.warning("channel %s could not be fetched; taken as a channel", channel_id)
                return None
        if isinstance(channel, discord.Thread):
            self._threads[channel_id] = str(channel.parent_id)
            return self._threads[channel_id]
        return None

    async def roles_of(
        self, *, guild_id: int, user_id: int, member: discord.Member | None = None
    ) -> frozenset[str]:
        """The member's roles by id and by name, so approver roles may be given either way.
        Uses the gateway's member when there is one; else asks the API (a reaction removal
        carries no member, and a guild may not be cached yet)."""
        guild = self._client.get_guild(guild_id)
        if guild is None:
            member = None  # an interaction's member without the guild cached knows no roles
        elif member is None:
            member = guild.get_member(user_id)
        if member is not None:
            ids = [str(role.id) for role in member.roles if not role.is_default()]
        else:
            try:
                data = await self._client.http.get_member(guild_id, user_id)
            except discord.NotFound:
                return frozenset()
            ids = [str(role_id) for role_id in data.get("roles", [])]
        names = await self._names_of_roles(guild_id, ids)
        return frozenset(ids) | frozenset(names[i] for i in ids if i in names)

    async def _names_of_roles(self, guild_id: int, ids: Iterable[str]) -> dict[str, str]:
        guild = self._client.get_guild(guild_id)
        names: dict[str, str] = {}
        missing = []
        for role_id in ids:
            role = guild.get_role(int(role_id)) if guild is not None else None
            if role is not None:
                names[role_id] = role.name
            else:
                missing.append(role_id)
        if missing:
            known = self._role_names.get(guild_id)
            if known is None or any(r not in known for r in missing):
                roles = await self._client.http.get_roles(guild_id)
                known = self._role_names[guild_id] = {str(r["id"]): r["name"] for r in roles}
            names.update({r: known[r] for r in missing if r in known})
        return names
