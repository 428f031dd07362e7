"""Emoji normalisation shared by the adapters, and the neutral values."""

from __future__ import annotations

import pytest

from bot.ports import ChatAdapter, MessageRef, vote_for_emoji
from bot.testing.chat import FakeAdapter


@pytest.mark.parametrize(
    ("emoji", "vote"),
    [
        ("white_check_mark", "approve"),
        (":+1:", "approve"),
        ("+1::skin-tone-4", "approve"),
        ("\u2705", "approve"),
        ("\U0001f44d\U0001f3fd", "approve"),  # 👍🏽
        ("\u2714\ufe0f", "approve"),
        ("x", "reject"),
        ("-1", "reject"),
        ("\u274c", "reject"),
        ("\U0001f44e", "reject"),
        ("repeat", "rerender"),
        ("\U0001f501", "rerender"),
        ("tada", None),
        ("\U0001f389", None),
    ],
)
def test_platform_emoji_become_votes(emoji, vote):
    assert vote_for_emoji(emoji) == vote


def test_message_refs_round_trip_and_name_their_thread():
    ref = MessageRef("slack", "C1", "1700.01", "1699.99")
    assert MessageRef.from_dict(ref.to_dict()) == ref
    assert ref.thread_id == "1699.99"
    assert MessageRef("slack", "C1", "1699.99").thread_id == "1699.99"
    assert ref.key == "slack:C1:1700.01"


def test_the_fake_adapter_is_a_chat_adapter():
    assert isinstance(FakeAdapter(), ChatAdapter)
