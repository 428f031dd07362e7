"""🔀 and ⬆️ on Discord: raw gateway reactions and ``/proofroom vary|upscale`` into the real
bot, service, queue and an embedded worker on ``tiny``; only Discord is the local fake."""

from __future__ import annotations

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
from tests.bot.followups.helpers import job_id_in

pytestmark = pytest.mark.slow

REQUESTER = "1600000000000000001"
APPROVER = "1600000000000000002"
STRANGER = "1600000000000000003"
JOB_TIMEOUT = 120


def images_in(fake: FakeDiscord, thread: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages.values() if m["channel_id"] == thread and m.get("attachments")]


def said(fake: FakeDiscord, thread: str, start: str) -> list[str]:
    return [
        m["content"]
        for m in fake.messages.values()
        if m["channel_id"] == thread and m.get("content", "").startswith(start)
    ]


def test_vary_and_upscale_on_discord(
    service_factory, worker, make_bot, fake_discord: FakeDiscord
) -> None:
    bot = make_bot(service_factory=service_factory)
    fake = fake_discord
    fake.add_member(APPROVER, name="ada", roles=[APPROVER_ROLE_ID])
    fake.add_member(STRANGER, name="sam", roles=[])
    interaction = command_interaction(
        "imagine", [option("prompt", "a lighthouse"), option("count", 1)], user_id=REQUESTER
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    job_id = job_id_in(bot.reply_to(interaction))
    thread = next(m for m in fake.messages.values() if m["channel_id"] == CHANNEL_ID)["id"]
    [image] = wait_for(lambda: images_in(fake, thread), timeout=JOB_TIMEOUT, what="the image")

    # A stranger's 🔀 does nothing but a notice (reviewers are a role here).
    bot.dispatch(
        "MESSAGE_REACTION_ADD",
        reaction(message_id=image["id"], channel_id=thread, user_id=STRANGER, emoji="\U0001f500"),
    )
    wait_for(lambda: said(fake, thread, f"<@{STRANGER}>"), what="the refusal notice")
    # The requester's 🔀 (the bot's own seeded reaction, clicked): four variations.
    bot.dispatch(
        "MESSAGE_REACTION_ADD",
        reaction(message_id=image["id"], channel_id=thread, user_id=REQUESTER, emoji="\U0001f500"),
    )
    wait_for(lambda: len(images_in(fake, thread)) == 5, timeout=JOB_TIMEOUT, what="four variations")
    [card] = said(fake, thread, "\U0001f500 Variations of image 1 (subtle)")
    captions = [m["content"].split(" \u00b7 ")[0] for m in images_in(fake, thread)[1:]]
    assert captions == [f"Variation {k}/4 of image 1" for k in range(1, 5)]
    spec = bot.service.queue.spec(job_id_in(card))
    assert spec is not None and (spec.parent, spec.strength) == (f"{job_id}/0", 0.35)

    # ⬆️ from an approver (with U+FE0F, as Discord sends it).
    bot.dispatch(
        "MESSAGE_REACTION_ADD",
        reaction(
            message_id=image["id"],
            channel_id=thread,
            user_id=APPROVER,
            emoji="\u2b06\ufe0f",
            roles=[APPROVER_ROLE_ID],
        ),
    )
    [upscale] = wait_for(
        lambda: said(fake, thread, "\u2b06\ufe0f Upscaling image 1 2x to 128x128"),
        what="the upscale card",
    )
    assert f"<@{APPROVER}>" in upscale

    # /proofroom upscale with a scale: the same follow-up as ⬆️.
    command = command_interaction(
        "proofroom",
        [option("image", f"{job_id}#1"), option("scale", 4)],
        subcommand="upscale",
        user_id=REQUESTER,
    )
    bot.dispatch("INTERACTION_CREATE", command)
    reply = bot.reply_to(command)
    assert "image 1 upscaled 4x to 256x256" in reply, reply
    queued = wait_for(lambda: bot.service.queue.spec(job_id_in(reply)), what="the 4x upscale")
    assert (queued.scale, queued.tile_size) == (4, 64)
