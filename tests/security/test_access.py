"""Who may do what, on each platform through its real entry point: admin commands (cancel
someone else's job, ``/imagine reload``) are refused to others and allowed to an admin by id
and, where the platform has roles, by role; a command from a channel outside the allow list
queues nothing. Reviews by someone who is not an approver are in ``test_reviewers``.

Already covered elsewhere: the allow list for ``help`` on each platform and for reactions
(``tests/bot/quotas/test_allow_list*.py``), a non-approver's vote in the fake chat
(``tests/bot/review/test_policy_and_restart.py``), ``/imagine reload`` by an admin id in the
fake chat and ``BotSettings.is_admin`` (``tests/bot/jobs/test_reload.py``), a user cancelling
another's job in the fake chat (``tests/bot/test_service.py``).

Jobs stay queued (no worker): cancelling one is what is tested, not rendering it.
"""

from __future__ import annotations

import io
import re

from bot.adapters.shell.cli import Shell
from bot.service import BotService
from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from engine.settings import Settings
from tests.bot.adapters.discord.fake_discord import CHANNEL_ID, FakeDiscord, text_channel
from tests.bot.adapters.discord.gateway import (
    APPROVER_ROLE,
    APPROVER_ROLE_ID,
    command_interaction,
    option,
)
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.conftest import queued_jobs
from tests.waiting import wait_for

NOT_YOURS = "You have no job `"
NOT_ADMIN = "Only admins can reload the catalog"
RELOADED = "Reloaded: "
ELSEWHERE = "Proofroom does not work in this channel"


def job_of(reply: str) -> str:
    """The job id of a "Queued job `...`" reply."""
    match = re.match(r"Queued job `(\w+)`", reply)
    assert match, reply
    return match[1]


def test_fake_chat_admins_by_id_or_role_cancel_anyones_job_and_reload(
    settings: Settings, redis
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        admin_ids=frozenset({"UADMIN"}),
        admin_roles=frozenset({"ops"}),
    )
    chat = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings, worker=False)
    try:
        first = job_of(chat.command("/imagine a boat --n 1", user="U1").text)
        second = job_of(chat.command("/imagine a plane --n 1", user="U1").text)
        # Another user, even with a role that is not an admin role: refused, nothing changes.
        for roles in (frozenset(), frozenset({"art"})):
            said = chat.command(f"/imagine cancel {first}", user="U2", roles=roles).text
            assert said.startswith(NOT_YOURS), said
            assert chat.command("/imagine reload", user="U2", roles=roles).text.startswith(
                NOT_ADMIN
            )
        assert queued_jobs(settings, redis) == 2
        # An admin by role, then one by id.
        said = chat.command(f"/imagine cancel {first}", user="U3", roles={"ops"}).text
        assert said.startswith(f"Cancelling job `{first}`"), said
        assert chat.command("/imagine reload", user="U3", roles={"ops"}).text.startswith(RELOADED)
        said = chat.command(f"/imagine cancel {second}", user="UADMIN").text
        assert said.startswith(f"Cancelling job `{second}`"), said
        assert chat.command("/imagine reload", user="UADMIN").text.startswith(RELOADED)
        assert queued_jobs(settings, redis) == 0
    finally:
        chat.close()


def test_the_shell_reloads_only_for_an_admin(settings: Settings) -> None:
    def session(admins: frozenset[str]) -> str:
        out = io.StringIO()
        bot_settings = BotSettings(_env_file=None, admin_ids=admins)  # type: ignore[call-arg]
        with Shell(
            settings=settings,
            user="you",
            channel="studio",
            worker=False,
            out=out,
            echo=True,
            bot_settings=bot_settings,
        ) as shell:
            shell.run_lines(["/imagine reload"])
        return out.getvalue()

    assert NOT_ADMIN in session(frozenset({"someone-else"}))
    allowed = session(frozenset({"you"}))
    assert RELOADED in allowed and NOT_ADMIN not in allowed


def test_slack_admin_commands_and_the_allow_list(
    make_slack, fake_slack: FakeSlack, settings: Settings, redis
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        admin_ids=frozenset({"UADMIN"}),
        allowed_channels=frozenset({"CGENERAL"}),
    )
    slack = make_slack(bot_settings=bot_settings)

    def answer(send) -> str:
        """Send a request; the text of the ephemeral answer it got."""
        before = len(fake_slack.calls_to("response"))
        assert send().status == 200
        calls = wait_for(
            lambda: (calls := fake_slack.calls_to("response"))[before:] and calls,
            what="the answer",
        )
        return calls[before].args["text"]

    job = job_of(answer(lambda: slack.send.command("a fox --n 1", user="UALICE")))
    said = answer(lambda: slack.send.command(f"cancel {job}", user="UBOB"))
    assert said.startswith(NOT_YOURS), said
    said = answer(  # the Cancel button under the job card: the same rule
        lambda: slack.send.block_action(
            action_id="proofroom_cancel", value=job, user="UBOB", channel="CGENERAL",
            message_ts=fake_slack.calls_to("chat.postMessage")[0].response["ts"],
        )
    )  # fmt: skip
    assert said.startswith(NOT_YOURS), said
    assert answer(lambda: slack.send.command("reload", user="UBOB")).startswith(NOT_ADMIN)
    assert queued_jobs(settings, redis) == 1

    assert answer(lambda: slack.send.command("reload", user="UADMIN")).startswith(RELOADED)
    said = answer(lambda: slack.send.command(f"cancel {job}", user="UADMIN"))
    assert said.startswith(f"Cancelling job `{job}`"), said

    # Outside the allow list: a sentence, and nothing queued or posted, for an admin too.
    posts = len(fake_slack.calls_to("chat.postMessage"))
    for user in ("UALICE", "UADMIN"):
        said = answer(
            lambda who=user: slack.send.command("a fox --n 1", user=who, channel="CRANDOM")
        )
        assert said.startswith(f"{ELSEWHERE} (`CRANDOM`)"), said
    assert queued_jobs(settings, redis) == 0
    assert len(fake_slack.calls_to("chat.postMessage")) == posts


USER = "1600000000000000001"
OTHER = "1600000000000000002"
ROLE_HOLDER = "1600000000000000003"
ADMIN = "1600000000000000004"


def test_discord_admin_commands_by_role_or_id_and_the_allow_list(
    make_bot, fake_discord: FakeDiscord, settings: Settings, redis
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        admin_ids=frozenset({ADMIN}),
        admin_roles=frozenset({APPROVER_ROLE}),  # by name; the member carries its id
        allowed_channels=frozenset({CHANNEL_ID}),
    )
    bot = make_bot(
        service_factory=lambda adapter: BotService.build(
            adapter=adapter, settings=settings, bot_settings=bot_settings, redis=redis
        )
    )

    def answer(name: str, options=(), *, user: str, roles=(), sub=None, channel=None) -> str:
        interaction = command_interaction(
            name, list(options), user_id=user, roles=list(roles), subcommand=sub, channel=channel
        )
        bot.dispatch("INTERACTION_CREATE", interaction)
        return bot.reply_to(interaction)

    def imagine(prompt: str, **kw) -> str:
        return answer("imagine", [option("prompt", prompt), option("count", 1)], **kw)

    first, second = job_of(imagine("a boat", user=USER)), job_of(imagine("a plane", user=USER))
    cancel = [option("job", first)]
    said = answer("proofroom", cancel, user=OTHER, sub="cancel")
    assert said.startswith(NOT_YOURS), said
    assert answer("proofroom", user=OTHER, sub="reload").startswith(NOT_ADMIN)
    assert queued_jobs(settings, redis) == 2

    said = answer("proofroom", cancel, user=ROLE_HOLDER, roles=[APPROVER_ROLE_ID], sub="cancel")
    assert said.startswith(f"Cancelling job `{first}`"), said
    reloaded = answer("proofroom", user=ROLE_HOLDER, roles=[APPROVER_ROLE_ID], sub="reload")
    assert reloaded.startswith(RELOADED), reloaded
    said = answer("proofroom", [option("job", second)], user=ADMIN, sub="cancel")
    assert said.startswith(f"Cancelling job `{second}`"), said
    assert answer("proofroom", user=ADMIN, sub="reload").startswith(RELOADED)

    # Another channel of the same server, not on the list: a sentence, nothing queued.
    elsewhere = text_channel("1300000000000000777")
    said = imagine("a kite", user=ADMIN, channel=elsewhere)
    assert said.startswith(f"{ELSEWHERE} (`1300000000000000777`)"), said
    assert queued_jobs(settings, redis) == 0
