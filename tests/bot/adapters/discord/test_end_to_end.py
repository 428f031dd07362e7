"""``/imagine`` on Discord end to end on the ``tiny`` model: the real bot, the real service,
the real queue and an embedded worker on the real Redis; only Discord is the local fake.

interaction -> deferred within 3 s -> job card -> thread -> progress edits -> one message
per image -> raw ✅ from an approver -> export; then a restart (new client, new service,
same Redis) and a ✅ on an image posted before it still exports.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.bot.adapters.discord.fake_discord import CHANNEL_ID, FakeDiscord
from tests.bot.adapters.discord.gateway import (
    APPROVER_ROLE_ID,
    command_interaction,
    option,
    reaction,
    wait_for,
)

pytestmark = pytest.mark.slow

REQUESTER = "1600000000000000001"
APPROVER = "1600000000000000002"
JOB_TIMEOUT = 120  # a cold tiny model on two CPU cores


def images_in_thread(fake: FakeDiscord, thread: str) -> list[Any]:
    return [c for c in fake.calls_to("POST", f"/channels/{thread}/messages") if c.files]


def test_imagine_to_export_and_a_vote_after_restart(
    service_factory, worker, make_bot, fake_discord: FakeDiscord, bot_settings, settings
) -> None:
    # Fixture order matters for teardown: bots close first, then the worker, then Redis.
    bot = make_bot(service_factory=service_factory)
    fake = fake_discord
    fake.add_member(APPROVER, name="ada", roles=[APPROVER_ROLE_ID])
    interaction = command_interaction(
        "imagine",
        [
            option("prompt", "a red fox in the snow"),
            option("count", 2),
            option("seed", 7),
            option("steps", 2),
        ],
        user_id=REQUESTER,
    )

    sent = time.monotonic()
    bot.dispatch("INTERACTION_CREATE", interaction)
    reply = bot.reply_to(interaction)

    # Deferred within Discord's 3 s, before anything else was done for the command.
    defer = fake.calls_to("POST", f"/interactions/{interaction['id']}/")[0]
    assert defer.json["type"] == 5  # DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE
    assert defer.json["data"]["flags"] & 64  # ephemeral: only the requester sees the reply
    assert defer.at - sent < 3
    card = fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")[0]
    assert defer.at < card.at
    assert reply.startswith("Queued job `"), reply
    job_id = reply.split("`")[1]

    # The job card starts a thread named after it; everything else goes into the thread.
    root = next(m for m in fake.messages.values() if m["channel_id"] == CHANNEL_ID)
    thread = root["id"]
    images = wait_for(
        lambda: len(images_in_thread(fake, thread)) == 2 and images_in_thread(fake, thread),
        timeout=JOB_TIMEOUT,
        what="two images in the thread",
    )
    assert thread in fake.threads
    assert fake.threads[thread]["name"]
    progress = [c for c in fake.calls_to("POST", f"/channels/{thread}/messages") if not c.files]
    assert progress, "a progress message in the thread"
    edits = wait_for(
        lambda: fake.calls_to("PATCH", f"/channels/{thread}/messages/"), what="progress edits"
    )
    assert all(e.token == f"Bot {fake.token}" for e in edits)
    assert [len(i.files) for i in images] == [1, 1]  # one message per image
    assert all(name.endswith(".png") for i in images for name, _ in [i.files[0]])
    # Nothing about the job went through the interaction's webhook (its token dies in 15 min).
    assert not fake.calls_to("POST", "/webhooks/")
    image_ids = [_posted_id(fake, i) for i in images]

    # The requester cannot approve their own image; the approver's ✅ exports it.
    export_dir = bot_settings.export_path(settings)
    bot.dispatch(
        "MESSAGE_REACTION_ADD",
        reaction(
            message_id=image_ids[0],
            channel_id=thread,
            user_id=APPROVER,
            emoji="\u2705",
            roles=[APPROVER_ROLE_ID],
        ),
    )
    first = wait_for(lambda: list(export_dir.glob(f"{job_id}-0-*.png")), what="first export")
    assert first[0].with_suffix(".json").exists()

    # Restart: a new client and a new service on the same Redis; the old image still counts,
    # reacted to with 👍 and with the member's roles known only by id from the gateway.
    bot.close()
    bot = make_bot(service_factory=service_factory)
    bot.dispatch(
        "MESSAGE_REACTION_ADD",
        reaction(
            message_id=image_ids[1],
            channel_id=thread,
            user_id=APPROVER,
            emoji="\U0001f44d",
            roles=[APPROVER_ROLE_ID],
        ),
    )
    second = wait_for(lambda: list(export_dir.glob(f"{job_id}-1-*.png")), what="second export")
    assert second[0].stat().st_size > 0
    said = wait_for(
        lambda: [
            c
            for c in fake.calls_to("POST", f"/channels/{thread}/messages")
            if "approved" in (c.json or {}).get("content", "").lower()
        ],
        what="approval notes",
    )
    assert len(said) == 2


def _posted_id(fake: FakeDiscord, call: Any) -> str:
    """The id the fake gave the message ``call`` created."""
    name = call.files[0][0]
    return next(
        m["id"]
        for m in fake.messages.values()
        if any(a["filename"] == name for a in m["attachments"])
    )
