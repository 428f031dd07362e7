"""The Discord side of the :class:`~bot.ports.ChatAdapter` port: a translator, no rules.

Everything goes through discord.py's models with the bot token (``channel.send``,
``message.edit``, ``message.add_reaction``: its rate limiter and retries), never through an
interaction's webhook, whose token dies after 15 minutes while a job may take longer.
Payload dicts in, :mod:`bot.ports` values out.

- A thread is the port's "thread": it is started from the bot's own message on first use
  (``POST /channels/{channel}/messages/{message}/threads``) and then has that message's
  id, so ``MessageRef.thread`` is the root message id on both platforms. A message in a
  thread is ``MessageRef(channel=<parent channel>, id, thread=<root id>)``.
- One message per image, the file a ``discord.File``; an image over the guild's upload
  limit is re-encoded to fit (:mod:`bot.adapters.images`); the original stays in the store.
- Reactions: unicode emoji become votes through :func:`bot.ports.vote_for_emoji`.
- Every message and edit carries ``allowed_mentions`` naming exactly the users the bot
  mentioned (:func:`~bot.adapters.discord.text.allowed_mentions`): a mention, role or
  ``@everyone`` typed into a prompt is shown, never pinged.

The port is synchronous (the service runs in worker threads); each method hands its
coroutine to the client's event loop and waits. The ``a*`` coroutines are the same calls
for code already on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, TypeVar

import discord

from bot.adapters.discord.directory import DiscordDirectory
from bot.adapters.discord.settings import DiscordSettings
from bot.adapters.discord.text import allowed_mentions, message_text, not_allowed, thread_name
from bot.adapters.images import fit_upload
from bot.ports import (
    VOTE_EMOJI,
    VOTES,
    ChannelUnavailable,
    MessageRef,
    ReactionEvent,
    vote_for_emoji,
)

log = logging.getLogger(__name__)

PLATFORM = "discord"
THREAD_EXISTS = 160004  # "A thread has already been created for this message"
T = TypeVar("T")


class DiscordAdapter:
    """Posts, edits and uploads for the service; translates raw reactions for it."""

    platform = PLATFORM

    def __init__(self, *, client: discord.Client, settings: DiscordSettings) -> None:
        self._client = client
        self._settings = settings
        # Caches only: Discord is the truth (a second thread start answers THREAD_EXISTS,
        # a thread's parent can be fetched), so a restart loses nothing.
        self.directory = DiscordDirectory(client=client)
        # Messages this bot posted, newest last: a thread is named after its root's text,
        # and an edit needs no lookup. After a restart, ids alone still do (partial messages).
        self._sent: OrderedDict[str, discord.Message] = OrderedDict()
        self._upload_limits: dict[str, int] = {}  # channel id -> bytes, from interactions
        self._thread_locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    # ---- the port (blocking; call from threads, never from the event loop) -------------
    def post(
        self,
        *,
        channel: str,
        text: str,
        thread: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> MessageRef:
        """Post ``text`` to ``channel``, inside ``thread`` (started here if need be).
        ``blocks`` (Slack Block Kit) have no Discord form; the text carries everything."""
        return self._wait(self.apost(channel=channel, text=text, thread=thread))

    def edit(
        self, *, message: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Replace the text of a message this bot posted."""
        self._wait(self.aedit(message=message, text=text))

    def upload(
        self,
        *,
        channel: str,
        thread: str | None,
        data: bytes,
        filename: str,
        text: str,
        votable: bool = False,
    ) -> MessageRef:
        """One file as its own message; an image over the channel's upload limit is
        re-encoded to fit, and a ``votable`` one gets the vote reactions."""
        return self._wait(
            self.aupload(
                channel=channel,
                thread=thread,
                data=data,
                filename=filename,
                text=text,
                votable=votable,
            )
        )

    def notify(self, *, channel: str, user: str, text: str, thread: str | None = None) -> None:
        """Discord has no ephemeral messages outside an interaction: mention the user where
        the conversation is, pinging only them; where the bot may not post at all, a direct
        message instead, since that is usually the news."""
        self._wait(self.anotify(channel=channel, user=user, text=text, thread=thread))

    def upload_private(
        self, *, channel: str, user: str, data: bytes, filename: str, text: str
    ) -> None:
        """A direct message with the file (a command's answer here is ephemeral); with
        the user's DMs closed, their mention and the file in ``channel`` instead."""
        self._wait(
            self.aupload_private(
                channel=channel, user=user, data=data, filename=filename, text=text
            )
        )

    # ---- the same on the event loop ------------------------------------------------------
    async def apost(self, *, channel: str, text: str, thread: str | None = None) -> MessageRef:
        """Coroutine of :meth:`post`."""
        target = await self._target(channel=channel, thread=thread)
        sent = await self._send(target, text=text)
        return MessageRef(PLATFORM, channel, str(sent.id), thread)

    async def anotify(
        self, *, channel: str, user: str, text: str, thread: str | None = None
    ) -> None:
        """Coroutine of :meth:`notify`."""
        mention = f"<@{user}>"
        try:
            target = await self._target(channel=channel, thread=thread)
            # Only the user told: another user the text names (an approver) is not pinged.
            await self._send(target, text=f"{mention} {text}", pings=allowed_mentions(mention))
        except ChannelUnavailable:
            try:
                recipient = self._client.get_user(int(user)) or await self._client.fetch_user(
                    int(user)
                )
                await recipient.send(  # a direct message notifies its reader anyway
                    content=message_text(text), allowed_mentions=discord.AllowedMentions.none()
                )
            except discord.HTTPException as exc:  # DMs closed: nowhere left to say it
                log.warning("could not tell user %s by direct message either: %s", user, exc)

    async def aedit(self, *, message: MessageRef, text: str) -> None:
        """Coroutine of :meth:`edit`."""
        target: discord.Message | discord.PartialMessage | None = self._sent.get(message.id)
        if target is None:  # posted before a restart: its id is enough to edit it
            where = self._client.get_partial_messageable(int(message.thread or message.channel))
            target = where.get_partial_message(int(message.id))
        try:
            edited = await target.edit(
                content=message_text(text), allowed_mentions=allowed_mentions(text)
            )
        except discord.Forbidden as exc:  # access lost mid-job: as for a post, not a crash
            raise not_allowed(message.thread or message.channel, exc) from None
        self._remember(edited)

    async def aupload(
        self,
        *,
        channel: str,
        thread: str | None,
        data: bytes,
        filename: str,
        text: str,
        votable: bool = False,
    ) -> MessageRef:
        """Coroutine of :meth:`upload`."""
        target = await self._target(channel=channel, thread=thread)
        caption = text
        # Manifests and zips (batches) are files to download, not images to fit.
        if filename.lower().endswith(IMAGE_SUFFIXES):
            fitted = await asyncio.to_thread(
                fit_upload, data, filename=filename, limit=self.upload_limit(channel)
            )
            data, filename = fitted.data, fitted.filename
            caption = text if fitted.note is None else f"{text}\n-# {fitted.note}"
        file = discord.File(io.BytesIO(data), filename=filename)
        # A job's image is posted once even when a first try landed but its answer was lost
        # (a timeout, a reset, the bot killed before it recorded the post): Discord gives
        # the first message back for a repeated nonce (enforce_nonce, a few minutes).
        nonce = upload_nonce(target, filename) if votable else None
        posted = await self._send(target, text=caption, file=file, nonce=nonce)
        if votable and self._settings.seed_reactions:
            # In the background: three reactions take about a second of rate limit, and
            # the next image should not wait for them.
            self._spawn(self._seed_reactions(posted))
        return MessageRef(PLATFORM, channel, str(posted.id), thread)

    async def aupload_private(
        self, *, channel: str, user: str, data: bytes, filename: str, text: str
    ) -> None:
        """Coroutine of :meth:`upload_private`."""
        try:
            recipient = self._client.get_user(int(user)) or await self._client.fetch_user(int(user))
            await recipient.send(
                content=message_text(text),
                file=discord.File(io.BytesIO(data), filename=filename),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:  # DMs closed: into the channel, for them
            log.info("no direct message to user %s (%s); posting in the channel", user, exc)
            await self.aupload(
                channel=channel, thread=None, data=data, filename=filename, text=f"<@{user}> {text}"
            )

    # ---- inbound: reactions, roles, limits ----------------------------------------------
    async def reaction_event(self, raw: discord.RawReactionActionEvent) -> ReactionEvent | None:
        """The port's value for a raw gateway reaction; None for emoji that mean no vote
        (before any lookup: most reactions in a server are not votes), for the bot's own
        reactions, and outside servers (DMs have no job threads)."""
        me = self._client.user
        if raw.guild_id is None or (me is not None and raw.user_id == me.id):
            return None
        emoji = raw.emoji
        vote = vote_for_emoji(str(emoji) if emoji.is_unicode_emoji() else emoji.name or "")
        if vote is None:
            return None
        channel_id = str(raw.channel_id)
        parent = await self.directory.thread_parent(channel_id)
        if parent is None:
            message = MessageRef(PLATFORM, channel_id, str(raw.message_id), None)
        else:
            message = MessageRef(PLATFORM, parent, str(raw.message_id), channel_id)
        roles = await self.directory.roles_of(
            guild_id=raw.guild_id, user_id=raw.user_id, member=raw.member
        )
        return ReactionEvent(
            platform=PLATFORM,
            user=str(raw.user_id),
            message=message,
            vote=vote,
            added=raw.event_type == "REACTION_ADD",
            roles=roles,
            event_id=None,  # the gateway has no event ids; a resumed session replays nothing twice
            guild=str(raw.guild_id),
        )

    def remember_upload_limit(self, *, channel: str, limit: int) -> None:
        """Record the guild's upload limit an interaction reported for ``channel``."""
        self._upload_limits[channel] = limit

    def upload_limit(self, channel: str) -> int:
        """Bytes one file may have in ``channel``: what the last interaction there said,
        else what the cached guild's boost level allows, else the setting."""
        if channel in self._upload_limits:
            return self._upload_limits[channel]
        cached = self._client.get_channel(int(channel))
        guild = getattr(cached, "guild", None)
        if guild is not None:
            return int(guild.filesize_limit)
        return self._settings.upload_limit_bytes

    async def aclose(self) -> None:
        """Wait for background work (reaction seeding) to finish."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ---- internals -----------------------------------------------------------------------
    async def _target(self, *, channel: str, thread: str | None) -> str:
        """The channel id to post to: the thread (started on first use), or the channel."""
        if thread is None or thread == channel:
            return channel
        if self.directory.known_parent(thread) is not None:
            return thread
        lock = self._thread_locks.setdefault(thread, asyncio.Lock())
        async with lock:
            if self.directory.known_parent(thread) is None:
                await self._start_thread(channel=channel, message_id=thread)
                self.directory.note_thread(thread=thread, parent=channel)
        self._thread_locks.pop(thread, None)
        return thread

    def _messageable(self, channel_id: str) -> discord.abc.Messageable:
        """The cached channel or thread, else a partial one (an id is all a post needs)."""
        cached = self._client.get_channel(int(channel_id))
        if isinstance(cached, discord.abc.Messageable):
            return cached
        return self._client.get_partial_messageable(int(channel_id))

    async def _send(
        self,
        channel_id: str,
        *,
        text: str,
        file: discord.File | None = None,
        pings: discord.AllowedMentions | None = None,
        nonce: str | None = None,
    ) -> discord.Message:
        """Send port ``text``, pinging the users it mentions (or only ``pings``); with
        ``nonce``, Discord creates no second message for the same nonce."""
        channel = self._messageable(channel_id)
        content, mentions = message_text(text), pings or allowed_mentions(text)
        # discord.py's types take no None for `file` or `nonce`.
        extra: dict[str, Any] = {"nonce": nonce} if nonce else {}
        try:
            if file is None:
                sent = await channel.send(content=content, allowed_mentions=mentions, **extra)
            else:
                sent = await channel.send(
                    content=content, allowed_mentions=mentions, file=file, **extra
                )
        except discord.Forbidden as exc:
            raise not_allowed(channel_id, exc) from None
        self._remember(sent)
        return sent

    async def _start_thread(self, *, channel: str, message_id: str) -> None:
        root = self._sent.get(message_id)
        name = thread_name(root.content if root is not None else "Proofroom job")
        try:
            await self._client.http.start_thread_with_message(
                channel,
                message_id,
                name=name,
                auto_archive_duration=self._settings.thread_archive_minutes,
            )
        except discord.Forbidden as exc:
            raise not_allowed(channel, exc) from None
        except discord.HTTPException as exc:
            if exc.code != THREAD_EXISTS:  # started before (by us, before a restart): fine
                raise

    async def _seed_reactions(self, message: discord.Message) -> None:
        for vote in VOTES:
            try:
                await message.add_reaction(VOTE_EMOJI[vote])
            except discord.HTTPException as exc:  # e.g. no Add Reactions permission
                log.warning("could not add %s to message %s: %s", vote, message.id, exc)
                return

    def _remember(self, message: discord.Message) -> None:
        key = str(message.id)
        self._sent[key] = message
        self._sent.move_to_end(key)
        while len(self._sent) > 1000:
            self._sent.popitem(last=False)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._client.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError(
                "DiscordAdapter's blocking methods were called on the event loop; "
                "run the service in a thread (asyncio.to_thread) or await the a* methods"
            )
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(self._settings.call_timeout_s)
        except TimeoutError:
            future.cancel()
            raise


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def upload_nonce(channel_id: str, filename: str) -> str:
    """The nonce of an image's message: the same for every try of the same image in the
    same place (a job's file names are unique), at most Discord's 25 characters."""
    return hashlib.sha256(f"{channel_id}/{filename}".encode()).hexdigest()[:25]
