"""Only approvers' reactions count, on Slack and on Discord through their real entry points:
a ✅ from someone who is not an approver exports nothing and leaves the image pending (they
hear why, once, privately); the approver's ✅ exports it. One image of ``tiny`` each, rendered
by the embedded worker. The fake chat's case is ``tests/bot/review/test_policy_and_restart``.
"""

from __future__ import annotations

import pytest

from bot.ports import MessageRef
from bot.service import BotService
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.adapters.discord.fake_discord import FakeDiscord
from tests.bot.adapters.discord.gateway import (
    APPROVER_ROLE,
    APPROVER_ROLE_ID,
    command_interaction,
    option,
    reaction,
)
from tests.bot.adapters.slack import slack_requests
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

JOB_TIMEOUT = 120  # a cold tiny model on two shared CPU cores


def test_on_slack_a_non_approvers_check_mark_changes_nothing(
    make_slack, fake_slack: FakeSlack, worker, settings: Settings
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        approver_ids=frozenset({"UCAROL"}),
    )
    slack = make_slack(bot_settings=bot_settings, pump=True)
    assert slack.send.command("a fox --n 1 --steps 1 --seed 3", user="UALICE").status == 200
    card = wait_for(lambda: fake_slack.calls_to("chat.postMessage"), what="the job card")[0]
    thread = card.response["ts"]
    [image] = wait_for(
        lambda: fake_slack.shared_files(thread=thread), timeout=JOB_TIMEOUT, what="the image"
    )
    export = bot_settings.export_path(settings)

    def check_mark(user: str) -> None:
        vote = slack_requests.reaction(
            name="white_check_mark", user=user, channel="CGENERAL", ts=image["ts"]
        )
        assert slack.send.event(vote).status == 200

    for user in ("UBOB", "UALICE"):  # a teammate, and the requester, neither an approver
        check_mark(user)
    told = wait_for(
        lambda: (
            len(fake_slack.calls_to("chat.postEphemeral")) >= 2
            and fake_slack.calls_to("chat.postEphemeral")
        ),
        what="the explanations",
    )
    assert {c.args["user"] for c in told} == {"UBOB", "UALICE"}
    assert all("Only <@UCAROL>" in c.args["text"] for c in told), told
    state = slack.runtime.service.state
    ref = MessageRef("slack", "CGENERAL", image["ts"], thread)
    assert state.image_state(ref) == "pending"
    assert not export.exists() or not any(export.iterdir())

    check_mark("UCAROL")
    wait_for(lambda: list(export.glob("*.png")), what="the export")
    assert state.image_state(ref) == "approved"


REQUESTER = "1600000000000000001"
MEMBER = "1600000000000000002"  # in the server, without the approver role
APPROVER = "1600000000000000003"


def test_on_discord_only_a_member_with_the_approver_role_approves(
    make_bot, fake_discord: FakeDiscord, worker, settings: Settings, redis
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        approver_roles=frozenset({APPROVER_ROLE}),
    )
    bot = make_bot(
        service_factory=lambda adapter: BotService.build(
            adapter=adapter, settings=settings, bot_settings=bot_settings, redis=redis
        )
    )
    interaction = command_interaction(
        "imagine",
        [option("prompt", "a fox"), option("count", 1), option("steps", 1), option("seed", 3)],
        user_id=REQUESTER,
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    assert bot.reply_to(interaction).startswith("Queued job `")
    [posted] = wait_for(
        lambda: [c for c in fake_discord.calls_to("POST", "/messages") if c.files],
        timeout=JOB_TIMEOUT,
        what="the image",
    )
    name = posted.files[0][0]
    image = next(
        m
        for m in fake_discord.messages.values()
        if any(a["filename"] == name for a in m["attachments"])
    )
    export = bot_settings.export_path(settings)

    def check_mark(user: str, roles: list[str]) -> None:
        bot.dispatch(
            "MESSAGE_REACTION_ADD",
            reaction(
                message_id=image["id"],
                channel_id=image["channel_id"],
                user_id=user,
                emoji="\u2705",
                roles=roles,
            ),
        )

    check_mark(MEMBER, [])
    said = wait_for(
        lambda: [
            c
            for c in fake_discord.calls_to("POST", "/messages")
            if f"<@{MEMBER}>" in (c.json or {}).get("content", "")
        ],
        what="the explanation",
    )
    assert f"people with the role `{APPROVER_ROLE}`" in said[0].json["content"]
    assert not export.exists() or not any(export.iterdir())

    check_mark(APPROVER, [APPROVER_ROLE_ID])
    wait_for(lambda: list(export.glob("*.png")), what="the export")
