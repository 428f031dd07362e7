"""User text is data on Discord: a ``<@id>``, ``<@&role>``, ``@everyone`` or ``@here`` typed
into a prompt is shown as typed and pings no one. Every message carries ``allowed_mentions``
naming exactly the users the bot means (the requester, approvers); roles and everyone never."""

from __future__ import annotations

import discord
import pytest

from bot import texts
from bot.adapters.discord.text import allowed_mentions, message_text
from tests.bot.adapters.discord.fake_discord import CHANNEL_ID, FakeDiscord
from tests.bot.adapters.discord.gateway import APPROVER_ROLE_ID, command_interaction, option

USER = "1600000000000000001"
EVE = "1600000000000000002"
# Every form Discord pings or links, as typed into the prompt.
TYPED = f"<@{EVE}> <@!{EVE}> <@&{APPROVER_ROLE_ID}> @everyone @here <#{CHANNEL_ID}>"


def test_a_prompt_with_every_mention_form_pings_only_the_requester(
    make_bot, service_factory, fake_discord: FakeDiscord
) -> None:
    bot = make_bot(service_factory=service_factory)
    interaction = command_interaction(
        "imagine",
        [
            option("prompt", f"a cat {TYPED} salt & pepper"),
            option("negative", TYPED),
            option("model", "tiny"),
        ],
        user_id=USER,
    )
    bot.dispatch("INTERACTION_CREATE", interaction)

    assert bot.reply_to(interaction).startswith("Queued job")
    card, *later = fake_discord.channel_posts()  # later: the thread's progress line
    # Only the requester may be pinged, whatever the content holds.
    assert card.json["allowed_mentions"] == {"parse": [], "users": [int(USER)]}
    assert all(post.json["allowed_mentions"] == {"parse": [], "users": []} for post in later)
    content = card.json["content"]
    assert content.startswith(f"<@{USER}> asked for")
    assert f"> a cat {TYPED} salt & pepper" in content  # shown as typed, no entities left
    assert f"Negative: {TYPED}" in content
    # The ephemeral reply pings no one either.
    [reply] = fake_discord.calls_to("PATCH", f"/webhooks/{interaction['application_id']}/")
    assert reply.json["allowed_mentions"] == {"parse": []}


def test_nothing_pings_by_default(make_bot) -> None:
    client = make_bot().client
    assert client.allowed_mentions is not None
    assert client.allowed_mentions.to_dict() == {"parse": []}


def test_notify_pings_only_the_user_told(make_bot, fake_discord: FakeDiscord) -> None:
    adapter = make_bot().adapter
    adapter.notify(channel=CHANNEL_ID, user=USER, text=texts.escape(f"`{TYPED}` is no model"))
    [call] = fake_discord.channel_posts()
    assert call.json["allowed_mentions"] == {"parse": [], "users": [int(USER)]}
    assert call.json["content"] == f"<@{USER}> `{TYPED}` is no model"


@pytest.mark.parametrize(
    ("text", "content", "users"),
    [
        (f"<@{USER}> asked", f"<@{USER}> asked", [int(USER)]),
        (
            f"by <@{USER}>, <@{EVE}>, <@{USER}>",
            f"by <@{USER}>, <@{EVE}>, <@{USER}>",
            [int(USER), int(EVE)],
        ),
        (texts.escape(f"{TYPED} & <lora:x:0.5>"), f"{TYPED} & <lora:x:0.5>", []),
        (texts.escape("&lt;"), "&lt;", []),  # unescaped once: what the user typed
        ("see <https://x.io/a|the file>", "see [the file](https://x.io/a)", []),
    ],
)
def test_port_text_as_content_and_its_pings(text: str, content: str, users: list[int]) -> None:
    assert message_text(text) == content
    mentions = allowed_mentions(text)
    assert mentions.to_dict() == {"parse": [], "users": users}
    merged = discord.AllowedMentions.none().merge(mentions)  # with the client's default
    assert merged.to_dict() == {"parse": [], "users": users}
