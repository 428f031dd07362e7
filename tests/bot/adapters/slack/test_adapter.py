"""The translator alone, against the fake Web API: message ts of uploads, ephemeral
fallbacks, Block Kit, Slack markup and reactions as neutral values."""

from __future__ import annotations

import time

import pytest

from bot.adapters.slack.adapter import SlackAdapter, blocks_for, make_client
from bot.adapters.slack.settings import SlackSettings
from bot.adapters.slack.text import command_text
from bot.jobs.attachments import AttachmentError
from bot.ports import MessageRef
from tests.bot.adapters.slack.fake_slack import FakeSlack


@pytest.fixture()
def adapter(fake_slack: FakeSlack, slack_settings: SlackSettings) -> SlackAdapter:
    return SlackAdapter(client=make_client(slack_settings), settings=slack_settings)


def test_an_upload_is_one_message_whose_ts_comes_from_the_files_shares(
    adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    fake_slack.share_visible_after = 3  # Slack shares the file a moment after the upload

    ref = adapter.upload(
        channel="C1", thread="17.1", data=b"\x89PNG...", filename="a.png", text="Image 1"
    )

    upload = fake_slack.uploads["FBOT0001"]
    assert ref == MessageRef("slack", "C1", upload["shares"]["public"]["C1"][0]["ts"], "17.1")
    assert len(fake_slack.calls_to("files.info")) == 3
    complete = fake_slack.calls_to("files.completeUploadExternal")[0].args
    assert (complete["channel_id"], complete["thread_ts"], complete["initial_comment"]) == (
        "C1",
        "17.1",
        "Image 1",
    )


def test_an_upload_whose_share_never_shows_keeps_the_file_id(
    fake_slack: FakeSlack, slack_settings: SlackSettings
) -> None:
    settings = slack_settings.model_copy(update={"share_wait_s": 0.3})
    adapter = SlackAdapter(client=make_client(settings), settings=settings)
    fake_slack.share_visible_after = 1000

    ref = adapter.upload(channel="C1", thread="17.1", data=b"x", filename="a.png", text="t")

    assert ref.id == "FBOT0001"  # logged; the image is in the thread all the same


def test_notify_is_ephemeral_and_falls_back_to_a_direct_message(
    adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    adapter.notify(channel="C1", user="U1", text="only you", thread="17.1")
    fake_slack.fail("chat.postEphemeral", "channel_not_found")
    adapter.notify(channel="CGONE", user="U1", text="invite me")

    first = fake_slack.calls_to("chat.postEphemeral")[0].args
    assert (first["channel"], first["user"], first["thread_ts"]) == ("C1", "U1", "17.1")
    dm = fake_slack.calls_to("chat.postMessage")[0].args
    assert (dm["channel"], dm["text"]) == ("U1", "invite me")


def test_buttons_become_block_kit_with_the_text_as_fallback(
    adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    cancel = {
        "type": "button",
        "action": "cancel",
        "value": "job1",
        "label": "Cancel",
        "style": "danger",
    }
    ref = adapter.post(channel="C1", text="job `job1`", blocks=[cancel])
    adapter.edit(message=ref, text="Done")

    posted, edited = (
        fake_slack.calls_to("chat.postMessage")[0].args,
        fake_slack.calls_to("chat.update")[0].args,
    )
    assert posted["text"] == "job `job1`"  # notifications and clients without blocks
    assert posted["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "job `job1`", "verbatim": True}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "proofroom_cancel",
                    "value": "job1",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Cancel"},
                },
            ],
        },
    ]
    # An edit without buttons drops them and shows the new text.
    assert edited["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Done", "verbatim": True}}
    ]
    # A message without buttons stays a plain message.
    adapter.post(channel="C1", text="plain", thread=ref.id)
    assert "blocks" not in fake_slack.calls_to("chat.postMessage")[1].args


def test_long_text_is_split_into_sections() -> None:
    blocks = blocks_for(text="x" * 7000, blocks=[])
    assert [len(b["text"]["text"]) for b in blocks] == [3000, 3000, 1000]


def test_slack_markup_is_undone_in_command_text() -> None:
    typed = "<@UPROOFBOT> product-photo product=\u201cleather &amp; suede\u201d <https://x.io/a|x.io/a> for <@U1>"
    assert command_text(typed, strip_mention=True) == (
        'product-photo product="leather & suede" https://x.io/a for <@U1>'
    )


@pytest.mark.parametrize(
    ("name", "vote"),
    [
        ("white_check_mark", "approve"),
        ("heavy_check_mark", "approve"),
        ("+1", "approve"),
        ("+1::skin-tone-4", "approve"),
        ("x", "reject"),
        ("-1", "reject"),
        ("repeat", "rerender"),
        ("tada", None),
    ],
)
def test_reactions_become_votes(adapter: SlackAdapter, name: str, vote: str | None) -> None:
    event = {
        "type": "reaction_added",
        "user": "U2",
        "reaction": name,
        "item": {"type": "message", "channel": "C1", "ts": "17.5"},
    }
    reaction = adapter.reaction_event(event=event, event_id="Ev1")
    assert reaction is not None
    assert (reaction.vote, reaction.added, reaction.user, reaction.event_id) == (
        vote,
        True,
        "U2",
        "Ev1",
    )
    assert reaction.message == MessageRef("slack", "C1", "17.5")


def test_a_removed_reaction_is_not_added(adapter: SlackAdapter) -> None:
    event = {
        "type": "reaction_removed",
        "user": "U2",
        "reaction": "x",
        "item": {"type": "message", "channel": "C1", "ts": "17.5"},
    }
    reaction = adapter.reaction_event(event=event, event_id=None)
    assert reaction is not None and reaction.added is False and reaction.vote == "reject"


def test_the_bot_token_goes_to_slack_hosts_only(adapter: SlackAdapter) -> None:
    file = {
        "id": "F1",
        "name": "a.png",
        "filetype": "png",
        "size": 10,
        "url_private_download": "https://evil.example/a.png",
    }
    with pytest.raises(AttachmentError, match="not stored on Slack"):
        adapter.attachments([file], max_pixels=10**6)


def test_a_refused_download_is_not_taken_for_the_file(
    adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    file = fake_slack.host_file(name="a.png", data=b"\x89PNG", mimetype="image/png", filetype="png")
    fake_slack.bot_token = "xoxb-rotated"  # the fake now answers our download with its sign-in page
    with pytest.raises(AttachmentError, match="didn't let me download"):
        adapter.attachments([file], max_pixels=10**6)


def test_edits_are_paced_below_the_rate_limit(
    fake_slack: FakeSlack, slack_settings: SlackSettings
) -> None:
    settings = slack_settings.model_copy(update={"update_interval_s": 0.3})
    adapter = SlackAdapter(client=make_client(settings), settings=settings)
    ref = MessageRef("slack", "C1", "17.1")

    started = time.monotonic()
    for step in range(3):
        adapter.edit(message=ref, text=f"step {step}")

    assert time.monotonic() - started >= 0.6  # waited, not dropped
    assert [c.args["text"] for c in fake_slack.calls_to("chat.update")] == [
        "step 0",
        "step 1",
        "step 2",
    ]


def test_a_private_upload_goes_by_direct_message(adapter: SlackAdapter, fake_slack: FakeSlack):
    # /imagine usage's chart: an ephemeral answer cannot carry a file.
    adapter.upload_private(
        channel="C1", user="U1", data=b"\x89PNG...", filename="usage.png", text="Images per day"
    )

    assert fake_slack.calls_to("conversations.open")[0].args["users"] == "U1"
    complete = fake_slack.calls_to("files.completeUploadExternal")[0].args
    assert (complete["channel_id"], complete["initial_comment"]) == ("DU1", "Images per day")
    assert not complete.get("thread_ts")
