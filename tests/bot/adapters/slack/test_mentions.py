"""User text is data on Slack: a prompt (or a variable, a negative, a file name, a quoted
word in an error) holding ``<!channel>``, ``<!here>``, ``<@U…>``, ``<!subteam^…>`` or
``<#C…>`` is shown as typed and notifies no one; only the bot's own mentions (the
requester, approvers) stay live."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot import texts
from bot.adapters.slack.text import mrkdwn
from tests.bot.adapters.slack.conftest import wait_for
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import mention

REQUESTER = "UALICE"
CHANNEL = "CGENERAL"
# Anything Slack reads as a mention, a broadcast or a channel link.
LIVE = re.compile(r"<[@!#][^<>]*>")
# Every mention form, as Slack sends a slash command's text (the user typed the brackets,
# so Slack escaped them) ...
TYPED = (
    "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;@UEVE&gt; &lt;@WEVE|eve&gt; "
    "&lt;!subteam^S0DESIGN|@designers&gt; &lt;#CSECRET|secret&gt; &lt;!date^1|x&gt;"
)
# ... and as an app_mention event carries them (mentions picked in the client are markup).
PICKED = "<!channel> <!here> <@UEVE> <!subteam^S0DESIGN> <#CSECRET|secret>"


def shown(call_args: dict[str, Any]) -> list[str]:
    """Every text Slack renders from one message: the text and each section block."""
    sections = [b["text"]["text"] for b in call_args.get("blocks") or [] if b["type"] == "section"]
    return [call_args["text"], *sections]


def test_a_prompt_with_every_mention_form_notifies_only_the_requester(
    make_slack, fake_slack: FakeSlack
) -> None:
    slack = make_slack()
    slack.send.command(f"a cat {TYPED} salt &amp; pepper --no {TYPED} --model tiny", user=REQUESTER)

    card = wait_for(lambda: fake_slack.calls_to("chat.postMessage"), what="the job card")[0]
    for text in shown(card.args):
        assert set(LIVE.findall(text)) == {f"<@{REQUESTER}>"}, text
        # Shown as typed: Slack displays the entities as the characters.
        assert "\n> a cat &lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;@UEVE&gt;" in text
        assert "Negative: &lt;!channel&gt;" in text
        assert "salt &amp; pepper" in text
    assert all(b["text"].get("verbatim") for b in card.args["blocks"] if b["type"] == "section")


def test_a_template_variable_and_an_app_mention_are_data_too(
    make_slack, fake_slack: FakeSlack
) -> None:
    slack = make_slack()
    slack.send.command(f'product-photo product="bag {TYPED}" --model tiny', user=REQUESTER)
    slack.send.event(mention(text=f"a cat {PICKED} --model tiny", user=REQUESTER, channel=CHANNEL))

    cards = wait_for(
        lambda: (
            len(fake_slack.calls_to("chat.postMessage")) == 2
            and fake_slack.calls_to("chat.postMessage")
        ),
        what="two job cards",
    )
    for card in cards:
        for text in shown(card.args):
            assert set(LIVE.findall(text)) == {f"<@{REQUESTER}>"}, text
    assert any("&lt;!channel&gt; &lt;!here&gt; &lt;@UEVE&gt;" in c.args["text"] for c in cards)


@pytest.mark.parametrize(
    ("command", "quoted"),
    [
        ("a cat --model &lt;!here&gt;", "&lt;!here&gt;"),
        # a user mention is markup the bot also writes: the error must escape it itself
        ("a cat --model &lt;@UEVE&gt;", "&lt;@UEVE&gt;"),
        ("help &lt;#CSECRET&gt;", "&lt;#CSECRET&gt;"),
        ("cancel &lt;@UEVE&gt;", "&lt;@UEVE&gt;"),
    ],
)
def test_a_reply_quoting_the_input_notifies_no_one(
    make_slack, fake_slack: FakeSlack, command: str, quoted: str
) -> None:
    slack = make_slack()
    slack.send.command(command, user=REQUESTER)

    reply = wait_for(lambda: fake_slack.calls_to("response"), what="the reply")[0].args["text"]
    assert quoted in reply and not LIVE.findall(reply), reply


@pytest.mark.parametrize(
    ("text", "shown_as"),
    [
        # the bot's own markup stays live
        ("<@UALICE> asked", "<@UALICE> asked"),
        ("I'm not in <#C123>", "I'm not in <#C123>"),
        ("see <https://x.io/a|the file>", "see <https://x.io/a|the file>"),
        # escaped user text stays escaped, once
        (texts.escape("<!channel> & <@UEVE>"), "&lt;!channel&gt; &amp; &lt;@UEVE&gt;"),
        (texts.escape("&lt;"), "&amp;lt;"),
        # anything else Slack would read as markup is escaped here, wherever it came from
        (
            "<!channel> <!here|here> <!subteam^S1|@team>",
            "&lt;!channel&gt; &lt;!here|here&gt; &lt;!subteam^S1|@team&gt;",
        ),
        ("a <lora:tiny-style:0.5> & b > c", "a &lt;lora:tiny-style:0.5&gt; &amp; b &gt; c"),
        ("> quoted\n> > twice", "> quoted\n> &gt; twice"),  # the bot's quotes stay quotes
        ("<@UEVE|eve> <#CSECRET|secret>", "&lt;@UEVE|eve&gt; &lt;#CSECRET|secret&gt;"),
    ],
)
def test_mrkdwn_keeps_only_the_bots_markup(text: str, shown_as: str) -> None:
    assert mrkdwn(text) == shown_as


def test_a_failure_quoting_input_and_a_second_prompt_line_stay_text() -> None:
    assert not LIVE.findall(mrkdwn(texts.failure("the word `<!here>` is not allowed")))
    assert mrkdwn(texts.quoted("a cat\n<@UEVE> approved it")) == (
        "> a cat\n> &lt;@UEVE&gt; approved it"  # a second line stays in the quote
    )
