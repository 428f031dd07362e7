"""The channel allow list (``PROOFROOM_ALLOWED_CHANNELS``): a command from another channel
gets one sentence and changes nothing; a reaction there is ignored. Through the service,
the shell and (in ``test_allow_list_slack``/``_discord``) each platform's real entry point."""

from __future__ import annotations

import io

from bot.adapters.shell.cli import Shell
from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from tests.bot.conftest import queued_jobs

REFUSED = "Proofroom does not work in this channel (`C2`). Ask an admin which channels it"


def test_a_command_from_another_channel_is_refused_before_anything_happens(
    quiet_chat, settings, redis
):
    chat = quiet_chat(allowed_channels=frozenset({"C1"}), admin_ids=frozenset({"UADMIN"}))
    assert chat.command("a fox --n 1", channel="C1").text.startswith("Queued job")
    for user in ("U1", "UADMIN"):  # the allow list is where the bot works, for admins too
        reply = chat.command("a fox --n 1", channel="C2", user=user)
        assert reply.text.startswith(REFUSED), reply.text
        assert reply.thread is None
    assert chat.command("help", channel="C2").text.startswith(REFUSED)
    assert queued_jobs(settings, redis) == 1


def test_a_reaction_in_another_channel_is_ignored(settings, redis):
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None, export_dir=settings.data_dir / "approved"
    )
    chat = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings)
    try:
        reply = chat.command("a fox --n 1 --steps 2")
        chat.run_until_idle()
        [image] = chat.images(reply.thread)
        chat.set_policy(allowed_channels=frozenset({"C-ELSEWHERE"}))
        chat.react(image, "approve", user="U2")
        assert "approved" not in chat.thread(reply.thread)[-1].text
        assert not list((settings.data_dir / "approved").glob("*.png"))
        chat.set_policy(allowed_channels=frozenset({chat.channel}))
        chat.react(image, "approve", user="U2")
        chat.wait_for(lambda: list((settings.data_dir / "approved").glob("*.png")))
    finally:
        chat.close()


def test_the_shell_answers_in_its_allowed_channel_only(settings):
    def session(channel: str) -> str:
        out = io.StringIO()
        allowed = BotSettings(_env_file=None, allowed_channels=frozenset({"studio"}))  # type: ignore[call-arg]
        with Shell(
            settings=settings,
            user="you",
            channel=channel,
            worker=False,
            out=out,
            echo=True,
            bot_settings=allowed,
        ) as shell:
            shell.run_lines(["/imagine help"])
        return out.getvalue()

    assert "Proofroom does not work in this channel (`lobby`)" in session("lobby")
    answered = session("studio")
    assert "does not work in this channel" not in answered and "--seed" in answered
