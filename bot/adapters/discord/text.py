"""Text as Discord shows it: message content, the mentions it may ping, thread titles, and
the sentence for a channel the bot may not post in.

The port's text escapes user words (``&lt;`` for ``<``, :func:`bot.texts.escape`); raw
``<@id>`` is a mention the bot means. Discord has no such escaping, so the entities become
characters again here, and what keeps a ``<@123>``, ``<@&role>`` or ``@everyone`` typed into
a prompt from pinging is the ``allowed_mentions`` sent with each message
(:func:`allowed_mentions`): exactly the users the bot mentioned, no roles, no everyone."""

from __future__ import annotations

import re

import discord

from bot.ports import ChannelUnavailable
from bot.texts import clip, unescape, visible

MAX_CONTENT = 2000  # characters per message
MAX_THREAD_NAME = 100
_SLACK_LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]+)>")
_NAME_JUNK = re.compile(r"[`*_~<>|#]+")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")
_USER_MENTION = re.compile(r"<@!?(\d+)>")  # in port text: the bot's own, users' are escaped


def not_allowed(channel_id: str, exc: discord.Forbidden) -> ChannelUnavailable:
    """A 403 as the port's :class:`ChannelUnavailable`, with a sentence the channel's people
    can act on: delivery keeps the images and tells the requester how to get them."""
    return ChannelUnavailable(
        f"Proofroom may not post in <#{channel_id}> ({exc.text or 'missing permissions'}); "
        "ask a server admin to give it View Channel, Send Messages, Create Public Threads, "
        "Send Messages in Threads and Attach Files there",
        channel=channel_id,
        error=exc.text or "forbidden",
    )


def message_text(text: str) -> str:
    """Port text as Discord shows it: Slack-style links become Markdown links, escaped user
    text its characters again (in one pass: ``&amp;lt;`` stays ``&lt;``); the length is cut
    to Discord's limit with a visible ellipsis. Control characters and bidirectional
    overrides are shown as U+FFFD (:func:`bot.texts.visible`)."""
    text = _SLACK_LINK.sub(r"[\2](\1)", text)
    return clip(visible(unescape(text)), MAX_CONTENT)


def allowed_mentions(text: str) -> discord.AllowedMentions:
    """Who a message made from port ``text`` may ping: the users the bot mentioned in it
    (raw ``<@id>``), never a role, ``@everyone`` or ``@here``, whatever the content says."""
    users = dict.fromkeys(int(found) for found in _USER_MENTION.findall(text))
    return discord.AllowedMentions(
        everyone=False,
        roles=False,
        users=[discord.Object(id=user) for user in users],
        replied_user=False,
    )


def thread_name(text: str) -> str:
    """A thread title from the root message: its first two lines without mentions and
    Markdown marks (a title cannot ping anyone and shows no formatting)."""
    text = visible(_MENTION.sub("", text))
    lines = [" ".join(_NAME_JUNK.sub(" ", ln).split()) for ln in text.splitlines()]
    name = " — ".join([ln for ln in lines if ln][:2]) or "Proofroom job"
    return clip(name, MAX_THREAD_NAME)
