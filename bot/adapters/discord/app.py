"""The Discord bot process: a ``discord.Client`` with the ``/imagine`` command tree.

Translation only. Commands (``bot.adapters.discord.commands``) become the same command text
the other platforms send, so there is one grammar and one set of error messages; attached
files are checked before anything is queued; raw gateway reactions become
:class:`~bot.ports.ReactionEvent`.

- Every interaction is deferred before anything else (Discord wants an answer within 3 s);
  the reply is then the service's sentence, ephemeral. Job output goes to a thread through
  the adapter with the bot token.
- Commands are synced to the configured guilds at start (instant there); global sync is
  optional (Discord takes up to an hour to show global changes).
- Intents: the defaults (guilds and reactions included) without message content, which
  slash commands and reactions do not need.
- The service is synchronous and talks to Redis: it runs in worker threads
  (``asyncio.to_thread``) so the event loop stays free to answer Discord.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

import discord
from discord import app_commands

from bot import texts
from bot.adapters.discord.adapter import PLATFORM, DiscordAdapter
from bot.adapters.discord.commands import add_commands
from bot.adapters.discord.settings import DiscordSettings
from bot.adapters.discord.text import message_text
from bot.jobs.attachments import AttachmentError, check_declared_size, checked_attachment
from bot.ports import Attachment, CommandEvent, ReactionEvent
from engine.catalog import Catalog
from engine.settings import Limits

log = logging.getLogger(__name__)

IN_FORUM = (
    "Proofroom opens a thread for each job, and a forum can't hold one outside a post; "
    "run /imagine in a text channel and the job's thread opens there."
)


class Service(Protocol):
    """What the app needs from the service (``bot.service``)."""

    def handle_command(self, event: CommandEvent) -> str: ...

    def handle_reaction(self, event: ReactionEvent) -> Any: ...

    def pump_until(self, stop: threading.Event, *, block_ms: int) -> None: ...


class ProofroomDiscord(discord.Client):
    """The bot. Build it, :meth:`bind` a service made with :attr:`adapter`, then start it."""

    def __init__(
        self,
        *,
        settings: DiscordSettings,
        catalog: Catalog,
        limits: Limits,
        intents: discord.Intents | None = None,
        **options: Any,
    ) -> None:
        """``intents`` default to :func:`needed_intents`; ``options`` go to ``discord.Client``."""
        # Nothing pings unless a send names its users (the adapter names the ones it means).
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(intents=intents or needed_intents(), **options)
        self.settings = settings
        self.catalog = catalog
        self.limits = limits
        self.adapter = DiscordAdapter(client=self, settings=settings)
        self.tree = app_commands.CommandTree(self)
        self.service: Service | None = None
        self._stop = threading.Event()
        self._pump_task: asyncio.Task[None] | None = None
        add_commands(self.tree, bot=self, limits=limits)

    def bind(self, service: Service) -> None:
        """Attach the service; its job events are pumped once the client has logged in."""
        self.service = service

    # ---- lifecycle -----------------------------------------------------------------------
    async def setup_hook(self) -> None:
        """Runs at login, before the gateway connects: sync commands, start the pump."""
        await self.sync_commands()
        if self.service is not None:
            self._pump_task = asyncio.create_task(self._pump_forever(), name="proofroom-pump")

    async def sync_commands(self) -> None:
        """Replace the command list in each configured guild (or globally)."""
        if self.settings.sync_global:
            synced = await self.tree.sync()
            log.info("synced %d global commands (may take up to an hour to show)", len(synced))
            return
        if not self.settings.guild_ids:
            log.warning("no PROOFROOM_DISCORD_GUILD_IDS and global sync off: commands not synced")
        for guild_id in self.settings.guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild_id)

    async def close(self) -> None:
        """Stop pumping (after the current pump returns), then disconnect."""
        self._stop.set()
        if self._pump_task is not None:
            await asyncio.gather(self._pump_task, return_exceptions=True)
        await self.adapter.aclose()
        await super().close()

    async def _pump_forever(self) -> None:
        assert self.service is not None
        # One thread for the bot's life: the service blocks on Redis, the loop must not.
        await asyncio.to_thread(
            self.service.pump_until, self._stop, block_ms=self.settings.pump_block_ms
        )

    # ---- gateway events ------------------------------------------------------------------
    async def on_raw_reaction_add(self, raw: discord.RawReactionActionEvent) -> None:
        """Fires for uncached messages too, so votes on images posted before a restart count."""
        await self._reaction(raw)

    async def on_raw_reaction_remove(self, raw: discord.RawReactionActionEvent) -> None:
        await self._reaction(raw)

    async def _reaction(self, raw: discord.RawReactionActionEvent) -> None:
        if self.service is None:
            return
        event = await self.adapter.reaction_event(raw)
        if event is None:
            return
        await asyncio.to_thread(self.service.handle_reaction, event)  # it logs its failures

    # ---- commands --------------------------------------------------------------------------
    async def run_command(
        self, interaction: discord.Interaction, *, text: str, files: dict[str, Any] | None = None
    ) -> None:
        """Defer, check attachments, hand the text to the service, reply with its sentence."""
        # First, before any await that could be slow: Discord drops unanswered
        # interactions after 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            reply = await self._command_reply(interaction, text=text, files=files or {})
        except AttachmentError as exc:
            reply = exc.message  # refused before anything was queued
        except Exception:  # here, not in the service: a download or a role lookup failed
            log.exception("command %r (interaction %s) failed", text, interaction.id)
            reply = texts.try_again(str(interaction.id))
        # Only the requester sees the reply: it pings no one, whatever it quotes.
        await interaction.edit_original_response(
            content=message_text(reply) or "\u2705",
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _command_reply(
        self, interaction: discord.Interaction, *, text: str, files: dict[str, Any]
    ) -> str:
        if interaction.guild_id is None:
            return "Proofroom works in server channels; run the command there."
        if self.service is None:
            return "Proofroom is starting; try again in a few seconds."
        channel = str(interaction.channel_id)
        if isinstance(interaction.channel, discord.Thread):
            if isinstance(interaction.channel.parent, discord.ForumChannel):  # media too
                return IN_FORUM
            # A thread cannot hold threads: the job's thread goes in the parent channel.
            parent = str(interaction.channel.parent_id)
            self.adapter.directory.note_thread(thread=channel, parent=parent)
            channel = parent
        self.adapter.remember_upload_limit(channel=channel, limit=interaction.filesize_limit)
        # Each typed option (image, mask, control) says which part its file plays.
        attachments = await self.checked_attachments(files)
        member = interaction.user if isinstance(interaction.user, discord.Member) else None
        event = CommandEvent(
            platform=PLATFORM,
            user=str(interaction.user.id),
            channel=channel,
            text=text,
            attachments=tuple(attachments.values()),
            roles=await self.adapter.directory.roles_of(
                guild_id=interaction.guild_id, user_id=interaction.user.id, member=member
            ),
            guild=str(interaction.guild_id),  # the allow list may name the server
        )
        return await asyncio.to_thread(self.service.handle_command, event)

    async def checked_attachments(self, files: dict[str, Any]) -> dict[str, Attachment]:
        """Download and check the files of a command's options (``{"image": attachment}``),
        None for options not given. Images are checked (type, size, pixels; a CSV is left to
        the batch desk) and named uniquely per command. Raises :class:`AttachmentError`
        with the sentence to show, before anything is queued."""
        checked: dict[str, Attachment] = {}
        used: set[str] = set()
        for role, file in files.items():
            if file is None:
                continue
            limit = self.settings.max_attachment_bytes
            check_declared_size(filename=file.filename, size=file.size, max_bytes=limit)
            try:
                data = await file.read()
            except discord.HTTPException:
                raise AttachmentError(
                    f"`{texts.escape(file.filename)}` could not be downloaded from Discord; "
                    "attach it again."
                ) from None
            name = file.filename if file.filename not in used else f"{role}-{file.filename}"
            used.add(name)
            checked[role] = await asyncio.to_thread(
                checked_attachment,
                data,
                filename=name,
                csv=role == "csv",
                max_bytes=limit,
                max_pixels=self.limits.max_input_pixels,  # the worker's own limit
                role=None if role == "csv" else role,  # the option names: image, mask, control
            )
        return checked


def needed_intents() -> discord.Intents:
    """The defaults (guilds, reactions) without message content: privileged, and nothing
    here reads message text. Members stay off too (privileged; roles come with events)."""
    intents = discord.Intents.default()
    intents.message_content = False
    return intents
