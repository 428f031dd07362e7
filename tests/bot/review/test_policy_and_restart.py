"""Who may decide, and that everything survives a bot restart (state lives in Redis)."""

from __future__ import annotations

from bot.ports import MessageRef
from bot.testing.chat import FakeChat


def rendered(chat: FakeChat, command: str):
    reply = chat.command(command)
    chat.run_until_idle()
    return reply.thread, chat.images(reply.thread)


def test_a_reaction_from_someone_who_may_not_approve_changes_nothing_and_is_explained_once(
    chat: FakeChat,
):
    chat.set_policy(approver_ids=frozenset({"U9"}), approver_roles=frozenset({"art-director"}))
    thread, images = rendered(chat, "/imagine a teapot --n 2 --steps 2")
    before = len(chat.thread(thread))
    folder = chat.bot_settings.export_path(chat.settings)

    chat.react(images[0], "approve", user="U2")
    chat.react(images[1], "reject", user="U2")
    chat.react(images[0], "\U0001f44d", user="U2")
    # As Slack reports reactions: the message alone, without its thread.
    ref = images[1].ref
    chat.react(MessageRef(ref.platform, ref.channel, ref.id), "approve", user="U2")
    assert len(chat.thread(thread)) == before, "nothing said in the thread"
    assert not folder.exists() or not any(folder.iterdir())
    assert chat.service.state.image_state(images[0].ref) == "pending"
    notices = chat.notices_for("U2")
    assert len(notices) == 1
    assert notices[0].thread == thread.id
    assert "Only <@U9> or people with the role `art-director` can approve" in notices[0].text
    audit = [e for e in chat.service.state.audit_log() if e["user"] == "U2"]
    assert [(e["vote"], e["counted"]) for e in audit] == [
        ("approve", "no"),
        ("reject", "no"),
        ("approve", "no"),
        ("approve", "no"),
    ]

    chat.react(images[0], "approve", user="U3", roles={"art-director"})
    chat.react(images[1], "approve", user="U9")
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".json", ".png", ".png"]
    assert len(chat.notices_for("U3")) == len(chat.notices_for("U9")) == 0


def test_requester_cannot_approve_their_own_image_when_the_policy_says_so(chat: FakeChat):
    chat.set_policy(requester_may_approve=False, approvals_needed=2)
    thread, (image,) = rendered(chat, "/imagine a kite --n 1 --steps 2")
    chat.react(image, "approve", user="U1")  # U1 asked for it
    chat.react(image, "approve", user="U1", event_id="other")
    assert len(chat.notices_for("U1")) == 1
    assert "your own image" in chat.notices_for("U1")[0].text

    chat.react(image, "approve", user="U2")
    assert chat.thread(thread)[-1].text == "Image 1: 1 of 2 approvals."
    chat.react(image, "approve", user="U3")
    assert chat.service.state.image_state(image.ref) == "approved"
    assert "approved by <@U2>, <@U3>" in chat.thread(thread)[-1].text


def test_a_redelivered_reaction_event_counts_once(chat: FakeChat):
    chat.set_policy(approvals_needed=2)
    thread, (image,) = rendered(chat, "/imagine a kite --n 1 --steps 2")
    chat.react(image, "approve", user="U2", event_id="Ev1")
    chat.react(image, "approve", user="U2", event_id="Ev1")  # Slack retried
    assert len(chat.service.state.audit_log()) == 1


def test_after_a_restart_results_reach_their_thread_and_old_images_still_count(chat: FakeChat):
    reply = chat.command("/imagine a lighthouse at night --n 2 --steps 2 --seed 3")
    chat.restart()  # the bot died right after queueing; a new process takes over
    chat.run_until_idle()
    images = chat.images(reply.thread)
    assert [chat.service.state.image(m.ref).seed for m in images] == [3, 4]

    chat.restart()
    chat.react(images[1], "approve", user="U2")
    assert chat.service.state.image_state(images[1].ref) == "approved"
    assert "approved by <@U2>" in chat.thread(reply.thread)[-1].text


def test_an_event_delivered_again_after_a_crash_posts_nothing_twice(chat: FakeChat):
    uploads = []

    def crash_on_third_upload(kind: str):
        if kind == "upload":
            uploads.append(kind)
            if len(uploads) == 3:
                return RuntimeError("the bot died here")
        return None

    chat.adapter.fail = crash_on_third_upload
    reply = chat.command("/imagine a cactus --n 4 --steps 2")
    chat.wait_for(lambda: len(uploads) >= 3)
    assert len(chat.images(reply.thread)) == 2

    chat.adapter.fail = None
    chat.restart()  # the unacknowledged done event is delivered again
    chat.run_until_idle()
    images = chat.images(reply.thread)
    assert len(images) == 4
    assert len({m.filename for m in images}) == 4
    progress = [m for m in chat.thread(reply.thread)[1:] if not m.is_image]
    assert len(progress) == 1


def test_a_chat_outage_while_posting_images_is_retried_without_a_restart(chat: FakeChat):
    failures = []

    def two_failed_uploads(kind: str):
        if kind == "upload" and len(failures) < 2:
            failures.append(kind)
            return ConnectionError("chat API unavailable")
        return None

    chat.adapter.fail = two_failed_uploads
    reply = chat.command("/imagine a cactus --n 2 --steps 2")
    chat.run_until_idle(timeout=30)
    assert len(failures) == 2
    assert [m.filename.split("-")[1] for m in chat.images(reply.thread)] == ["0", "1"]


def test_a_channel_that_refuses_posts_keeps_the_images_and_tells_the_requester(chat: FakeChat):
    from bot.ports import ChannelUnavailable

    def refuse_uploads(kind: str):
        if kind == "upload":
            return ChannelUnavailable("I'm not a member of <#C1>; invite me.", channel="C1")
        return None

    chat.adapter.fail = refuse_uploads
    reply = chat.command("/imagine a lighthouse --n 2 --steps 2")
    job_id = reply.text.split("`")[1]
    chat.wait_for(lambda: chat.notices_for(chat.user))
    while chat.pump(block_ms=10):
        pass
    assert chat.images(reply.thread) == []
    notices = chat.notices_for(chat.user)
    assert len(notices) == 1
    assert "invite me" in notices[0].text and f"/imagine repost {job_id}" in notices[0].text
    # The bot was invited: the images come from the store, once.
    chat.adapter.fail = None
    assert chat.command(f"/imagine repost {job_id}").text == (
        f"Posted the images of job `{job_id}` in its thread."
    )
    assert len(chat.images(reply.thread)) == 2
    assert "already in its thread" in chat.command(f"/imagine repost {job_id}").text
    assert "no job `nope`" in chat.command("/imagine repost nope").text


def test_the_job_card_carries_a_cancel_button(chat: FakeChat):
    reply = chat.command("/imagine a cat --n 1 --steps 2")
    job_id = reply.text.split("`")[1]
    posts = [kw for kind, kw in chat.adapter.calls if kind == "post" and kw["blocks"]]
    assert posts[0]["blocks"] == [
        {
            "type": "button",
            "action": "cancel",
            "value": job_id,
            "label": "Cancel",
            "style": "danger",
        }
    ]
    chat.run_until_idle()
