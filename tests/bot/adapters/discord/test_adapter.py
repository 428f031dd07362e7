"""The adapter's REST calls, recorded by the fake API, and its translation of raw reactions.

The port's methods are called from the test thread, as the service calls them from its
threads; the bot's event loop runs in its own thread.
"""

from __future__ import annotations

import io

import discord
import pytest
from PIL import Image

from bot.ports import ChannelUnavailable, MessageRef
from engine.errors import UserError
from tests.bot.adapters.discord.fake_discord import BOT_ID, CHANNEL_ID, FakeDiscord
from tests.bot.adapters.discord.gateway import (
    APPROVER_ROLE,
    APPROVER_ROLE_ID,
    reaction,
    wait_for,
)
from tests.bot.adapters.discord.images import encoded

USER = "1600000000000000001"


def test_post_starts_a_thread_once_from_the_bots_message(make_bot, fake_discord: FakeDiscord):
    adapter = make_bot().adapter
    root = adapter.post(
        channel=CHANNEL_ID, text=f"<@{USER}> asked for 2 images \u00b7 job `abc`\n> a red fox\nmore"
    )
    assert root == MessageRef("discord", CHANNEL_ID, root.id, None)

    first = adapter.post(channel=CHANNEL_ID, thread=root.id, text="rendering 1/4")
    second = adapter.post(channel=CHANNEL_ID, thread=root.id, text="rendering 2/4")

    assert first.thread == second.thread == root.id  # thread id = the root message's id
    assert first.channel == CHANNEL_ID
    starts = fake_discord.calls_to("POST", f"/channels/{CHANNEL_ID}/messages/{root.id}/threads")
    assert len(starts) == 1
    assert starts[0].json["name"] == "asked for 2 images \u00b7 job abc \u2014 a red fox"
    assert starts[0].json["auto_archive_duration"] == 1440
    assert len(fake_discord.calls_to("POST", f"/channels/{root.id}/messages")) == 2
    # Bot token on every call; the interaction webhook is never used.
    assert all(c.token == f"Bot {fake_discord.token}" for c in fake_discord.channel_posts())


def test_a_thread_started_before_a_restart_is_reused(make_bot, fake_discord: FakeDiscord):
    root = make_bot().adapter.post(channel=CHANNEL_ID, text="job")
    make_bot().adapter.post(channel=CHANNEL_ID, thread=root.id, text="one")
    restarted = make_bot().adapter  # knows nothing of the thread: Discord says it exists
    ref = restarted.post(channel=CHANNEL_ID, thread=root.id, text="two")
    assert ref.thread == root.id
    refused = fake_discord.calls_to("POST", f"/messages/{root.id}/threads")
    assert [c.status for c in refused] == [201, 400]


def test_edit_goes_to_the_thread_the_message_is_in(make_bot, fake_discord: FakeDiscord):
    adapter = make_bot().adapter
    root = adapter.post(channel=CHANNEL_ID, text="job")
    progress = adapter.post(channel=CHANNEL_ID, thread=root.id, text="queued")
    adapter.edit(message=progress, text="done <https://example.com/a|the file>")
    [edit] = fake_discord.calls_to("PATCH", f"/channels/{root.id}/messages/{progress.id}")
    assert edit.json["content"] == "done [the file](https://example.com/a)"


def test_a_message_posted_before_a_restart_is_edited_by_its_id(make_bot, fake_discord):
    first = make_bot().adapter
    root = first.post(channel=CHANNEL_ID, text="job")
    progress = first.post(channel=CHANNEL_ID, thread=root.id, text="queued")
    restarted = make_bot().adapter  # has no message objects: the ids must do
    restarted.edit(message=progress, text="rendering")
    restarted.edit(message=root, text="job: rendering")
    [in_thread] = fake_discord.calls_to("PATCH", f"/channels/{root.id}/messages/{progress.id}")
    [in_channel] = fake_discord.calls_to("PATCH", f"/channels/{CHANNEL_ID}/messages/{root.id}")
    assert (in_thread.json["content"], in_channel.json["content"]) == (
        "rendering",
        "job: rendering",
    )


def test_upload_is_one_message_with_one_file_and_vote_reactions(make_bot, fake_discord):
    adapter = make_bot().adapter
    root = adapter.post(channel=CHANNEL_ID, text="job")
    png = encoded("PNG")
    ref = adapter.upload(
        channel=CHANNEL_ID,
        thread=root.id,
        data=png,
        filename="j-0-7.png",
        text="image 1 of 1",
        votable=True,
    )
    [call] = [c for c in fake_discord.channel_posts() if c.files]
    assert call.path == f"/channels/{root.id}/messages"
    assert call.files == [("j-0-7.png", png)]
    assert call.json["content"] == "image 1 of 1"
    assert ref.thread == root.id
    reactions = wait_for(
        lambda: (
            len(fake_discord.calls_to("PUT", "/reactions/")) == 5
            and fake_discord.calls_to("PUT", "/reactions/")
        ),
        what="5 reactions",
    )
    assert [c.path.split("/")[6] for c in reactions] == [
        "\u2705",
        "\u274c",
        "\U0001f501",
        "\U0001f500",
        "\u2b06\ufe0f",
    ]
    assert all(f"/messages/{ref.id}/" in c.path for c in reactions)


def test_an_image_over_the_upload_limit_is_reencoded_to_fit(make_bot, fake_discord):
    adapter = make_bot().adapter
    adapter.remember_upload_limit(channel=CHANNEL_ID, limit=40_000)  # as an interaction reports
    png = encoded("PNG", size=(256, 256), noise=True)
    assert len(png) > 150_000
    adapter.upload(channel=CHANNEL_ID, thread=None, data=png, filename="j-0-7.png", text="image")
    [call] = [c for c in fake_discord.channel_posts() if c.files]
    name, data = call.files[0]
    assert len(data) <= 40_000
    assert name.endswith((".jpg", ".webp"))
    assert Image.open(io.BytesIO(data)).size == (256, 256)  # quality first, size kept
    assert "re-encoded" in call.json["content"] and "original is kept" in call.json["content"]


def test_the_upload_limit_defaults_to_the_guilds(make_bot):
    adapter = make_bot().adapter
    assert adapter.upload_limit(CHANNEL_ID) == 10 * 1024 * 1024  # cached guild, no boost
    assert adapter.upload_limit("1300000000000000999") == 10 * 1024 * 1024  # the setting


def test_notify_mentions_only_that_user(make_bot, fake_discord: FakeDiscord):
    adapter = make_bot().adapter
    adapter.notify(channel=CHANNEL_ID, user=USER, text="only <@42> can approve")
    [call] = fake_discord.channel_posts()
    assert call.json["content"] == f"<@{USER}> only <@42> can approve"
    # That user alone: not the approver the sentence names, no @everyone, no roles.
    assert call.json["allowed_mentions"] == {"parse": [], "users": [int(USER)]}
    assert "attachments" not in call.json  # a text message: no file fields at all


def test_no_permission_becomes_a_sentence_for_the_channel(make_bot, fake_discord: FakeDiscord):
    adapter = make_bot().adapter
    fake_discord.fail(
        "POST",
        f"/channels/{CHANNEL_ID}/messages",
        status=403,
        body={"message": "Missing Permissions", "code": 50013},
    )
    with pytest.raises(UserError, match="ask a server admin to give it View Channel, Send"):
        adapter.post(channel=CHANNEL_ID, text="job")


def test_where_the_bot_may_not_post_the_user_hears_by_direct_message(make_bot, fake_discord):
    adapter = make_bot().adapter
    fake_discord.fail(
        "POST",
        f"/channels/{CHANNEL_ID}/messages",
        status=403,
        body={"message": "Missing Access", "code": 50001},
        times=2,
    )
    # The port's refusal, so delivery keeps the images and tells the requester.
    with pytest.raises(ChannelUnavailable) as refused:
        adapter.post(channel=CHANNEL_ID, text="job")
    assert refused.value.channel == CHANNEL_ID
    adapter.notify(channel=CHANNEL_ID, user=USER, text="Your images are kept.")
    [opened] = fake_discord.calls_to("POST", "/users/@me/channels")
    assert str(opened.json["recipient_id"]) == USER
    [dm] = [c for c in fake_discord.channel_posts() if c.path != f"/channels/{CHANNEL_ID}/messages"]
    assert dm.json["content"] == "Your images are kept."


def test_a_rate_limited_post_is_retried_by_discord_py(make_bot, fake_discord: FakeDiscord):
    adapter = make_bot().adapter
    fake_discord.fail(
        "POST",
        f"/channels/{CHANNEL_ID}/messages",
        status=429,
        body={"message": "You are being rate limited.", "retry_after": 0.2, "global": False},
    )
    ref = adapter.post(channel=CHANNEL_ID, text="job")
    assert [c.status for c in fake_discord.calls_to("POST", "/messages")] == [429, 200]
    assert ref.id


def test_blocking_calls_refuse_to_run_on_the_event_loop(make_bot):
    bot = make_bot()

    async def on_loop():
        bot.adapter.post(channel=CHANNEL_ID, text="x")

    with pytest.raises(RuntimeError, match="called on the event loop"):
        bot.loop.run(on_loop())


# ---- reactions ------------------------------------------------------------------------------
def _event(bot, payload):
    kind = "REACTION_ADD" if "member" in payload or "burst_colors" in payload else "REACTION_REMOVE"
    emoji = discord.PartialEmoji.from_dict(payload["emoji"])
    raw = discord.RawReactionActionEvent(payload, emoji, kind)
    if "member" in payload:
        guild = bot.client.get_guild(int(payload["guild_id"]))
        raw.member = discord.Member(
            data=payload["member"], guild=guild, state=bot.client._connection
        )
    return bot.loop.run(bot.adapter.reaction_event(raw))


@pytest.mark.parametrize(
    ("emoji", "vote"),
    [
        ("\u2705", "approve"),
        ("\U0001f44d", "approve"),
        ("\U0001f44d\U0001f3fd", "approve"),
        ("\u274c", "reject"),
        ("\U0001f44e", "reject"),
        ("\U0001f501", "rerender"),
        ("\U0001f389", None),
    ],
)
def test_emoji_become_votes_with_the_thread_and_roles(make_bot, emoji, vote):
    bot = make_bot()
    root = bot.adapter.post(channel=CHANNEL_ID, text="job")
    image = bot.adapter.post(channel=CHANNEL_ID, thread=root.id, text="image")
    event = _event(
        bot,
        reaction(
            message_id=image.id,
            channel_id=root.id,
            user_id=USER,
            emoji=emoji,
            roles=[APPROVER_ROLE_ID],
        ),
    )
    if vote is None:
        assert event is None  # not a vote: dropped at the edge, nothing looked up
        return
    assert event.vote == vote
    assert event.message == image  # same ref as the upload returned: same Redis key
    assert event.roles == {APPROVER_ROLE_ID, APPROVER_ROLE}
    assert event.added and event.platform == "discord" and event.user == USER


def test_a_removal_has_no_member_so_roles_come_from_the_api(make_bot, fake_discord):
    bot = make_bot()
    fake_discord.add_member(USER, name="ada", roles=[APPROVER_ROLE_ID])
    event = _event(
        bot,
        reaction(
            message_id="1700000000000000001",
            channel_id=CHANNEL_ID,
            user_id=USER,
            emoji="\u2705",
            added=False,
        ),
    )
    assert not event.added
    assert event.roles == {APPROVER_ROLE_ID, APPROVER_ROLE}
    assert event.message == MessageRef("discord", CHANNEL_ID, "1700000000000000001", None)


def test_after_a_restart_the_threads_parent_is_fetched(make_bot, fake_discord):
    first = make_bot().adapter
    root = first.post(channel=CHANNEL_ID, text="job")
    image = first.post(channel=CHANNEL_ID, thread=root.id, text="image")
    bot = make_bot()  # no cache, no memory of the thread
    event = _event(
        bot,
        reaction(message_id=image.id, channel_id=root.id, user_id=USER, emoji="\u2705", roles=[]),
    )
    assert event.message == image
    assert fake_discord.calls_to("GET", f"/channels/{root.id}")


def test_the_bots_own_reactions_are_ignored(make_bot):
    bot = make_bot()
    assert (
        _event(
            bot,
            reaction(
                message_id="1700000000000000001",
                channel_id=CHANNEL_ID,
                user_id=BOT_ID,
                emoji="\u2705",
            ),
        )
        is None
    )


def test_a_private_upload_goes_by_direct_message(make_bot, fake_discord: FakeDiscord):
    # /imagine usage's chart: the command's answer is ephemeral and carries no file.
    adapter = make_bot().adapter
    adapter.upload_private(
        channel=CHANNEL_ID, user=USER, data=b"\x89PNG...", filename="usage.png", text="Per day"
    )
    [opened] = fake_discord.calls_to("POST", "/users/@me/channels")
    assert str(opened.json["recipient_id"]) == USER
    [dm] = [c for c in fake_discord.channel_posts() if c.files]
    assert dm.path != f"/channels/{CHANNEL_ID}/messages"
    assert dm.files == [("usage.png", b"\x89PNG...")]
    assert dm.json["content"] == "Per day"
