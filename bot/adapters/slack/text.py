"""Text between Slack's markup and the port's: what the bot posts (:func:`mrkdwn`) and what
users typed (:func:`command_text`).

Slack reads ``<…>`` in a message as markup: ``<@U…>`` notifies a user, ``<!channel>``,
``<!here>`` and ``<!subteam^…>`` notify a whole channel or group, ``<#C…>`` links a channel.
Slack's documented escaping (``&amp;``, ``&lt;``, ``&gt;``) is the only way to show those
characters as text. The port's text escapes user words the same way (:func:`bot.texts.escape`),
so here only the bot's own markup stays live and every other ``&``, ``<``, ``>`` is escaped:
a ``<!channel>`` that reached a message unescaped still notifies nobody. Control characters
and bidirectional overrides are shown as U+FFFD (:func:`bot.texts.visible`).
"""

from __future__ import annotations

import html
import re

from bot.texts import escape, visible

# What stays as it is: the bot's user mentions and channel links, links (a label after
# ``|``), entities already escaped, and a ``>`` that starts a line (a block quote: with no
# ``<`` it can make no markup). Broadcasts (``<!…>``) are never the bot's.
_KEPT = re.compile(
    r"<@[A-Z0-9]+>|<#[A-Z0-9]+>|<(?:https?|mailto):[^<>|\s]+(?:\|[^<>]*)?>|&(?:amp|lt|gt);|^>",
    re.MULTILINE,
)
_MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[\s:,]*")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|[^>]*)?>")
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def mrkdwn(text: str) -> str:
    """Port text as Slack shows it: the bot's mentions, channel links and links live,
    everything else's ``&``, ``<`` and ``>`` escaped (entities already there are kept)."""
    parts: list[str] = []
    end = 0
    for kept in _KEPT.finditer(text):
        parts += [escape(text[end : kept.start()]), kept.group()]
        end = kept.end()
    parts.append(escape(text[end:]))
    return visible("".join(parts))


def command_text(text: str, *, strip_mention: bool = False) -> str:
    """Slack's message markup back to what the user typed: ``&amp;``-escapes undone, link
    markup unwrapped, smart quotes (macOS and iOS clients insert them) made straight, and
    for an app mention the leading ``<@bot>`` removed. What comes out is the user's words,
    data from here on: :func:`mrkdwn` escapes it again when it is shown."""
    if strip_mention:
        text = _MENTION.sub("", text, count=1)
    text = _LINK.sub(r"\1", text)
    return html.unescape(text).translate(_QUOTES).strip()
