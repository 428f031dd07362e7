"""User text echoed back (a bad name quoted in a sentence, a prompt on a job card) reaches
Slack and Discord without characters that hide or reorder what the channel shows: control
characters and the bidirectional overrides arrive as U+FFFD, whatever else the text holds.
Each text the bot said in the chat goes through the platforms' own outgoing text functions
(the terminal's stripping is tests/bot/adapters/shell/test_cli.py's)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.discord.text import message_text, thread_name
from bot.adapters.slack.text import mrkdwn
from bot.testing.chat import FakeChat
from tests.bot.hostile.conftest import outcome

HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TRICKS = ["\x00", "\x1b[31m", "\u202e", "\u2066", "\r", "\x85", "\x7f"]


def said(chat: FakeChat, reply: str, *, since: int = 0) -> list[str]:
    """Every text the bot said: the command's reply and each post, edit and notice."""
    return [reply, *(str(call.get("text") or "") for _, call in chat.adapter.calls[since:])]


def on_the_platforms(text: str) -> list[str]:
    """``text`` as Slack and Discord are sent it (a Discord thread's title included)."""
    return [mrkdwn(text), message_text(text), thread_name(text)]


def test_quoted_names_and_prompts_show_no_hidden_characters(quiet_chat: FakeChat) -> None:
    commands = [
        "/imagine help x\x00y",  # an unknown help topic is quoted back
        "/imagine a cat --model gnp\u202e.exe",  # an unknown model is quoted back
        "/imagine a cat --lora \x1b[31mred",
        '/imagine poster product="mug\u2066 \x07" a red \u202emug',  # on the job card
    ]
    for command in commands:
        result = outcome(quiet_chat, command)
        for text in said(quiet_chat, result.text):
            for sent in on_the_platforms(text):
                assert not HIDDEN.search(sent), (command, sent)
    sent = " ".join(mrkdwn(text) for text in said(quiet_chat, ""))
    assert "\ufffd" in sent  # shown, not silently dropped: the user sees something was there


@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one chat for all examples
)
@given(
    words=st.lists(
        st.lists(st.sampled_from(["a", "b", " ", "-", "=", '"', *TRICKS]), max_size=12).map(
            "".join
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_echoed_text_reaches_the_platforms_free_of_hidden_characters(
    quiet_chat: FakeChat, words: list[str]
) -> None:
    before = len(quiet_chat.adapter.calls)
    result = outcome(quiet_chat, "/imagine " + " --model ".join(words))
    for text in said(quiet_chat, result.text, since=before):
        for sent in on_the_platforms(text):
            assert not HIDDEN.search(sent), sent
