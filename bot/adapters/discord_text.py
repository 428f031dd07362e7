"""Text as Discord shows it: message content, thread titles, and the sentence for a channel
the bot may not post in."""

from __future__ import annotations

import re

import discord

from bot.ports import ChannelUnavailable
from bot.texts import clip

MAX_CONTENT = 2000  # characters per message
MAX_THREAD_NAME = 100
_SLACK_LINK = re.compile(r"<(https?://[^|>\s]+)\|([^>]+)>")
_NAME_JUNK = re.compile(r"[`*_~<>|#]+")
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>")


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
    """Port text as Discord shows it: Slack-style links become Markdown links; the length
    is cut to Discord's limit with a visible ellipsis."""
    text = _SLACK_LINK.sub(r"[\2](\1)", text)
    return clip(text, MAX_CONTENT)


def thread_name(text: str) -> str:
    """A thread title from the root message: its first two lines without mentions and
    Markdown marks (a title cannot ping anyone and shows no formatting)."""
    text = _MENTION.sub("", text)
    lines = [" ".join(_NAME_JUNK.sub(" ", ln).split()) for ln in text.splitlines()]
    name = " — ".join([ln for ln in lines if ln][:2]) or "Proofroom job"
    return clip(name, MAX_THREAD_NAME)
