"""Approved images reach a CMS through the webhook: driven by reactions in the fake chat,
against the real queue, Redis and embedded worker, and a real local HTTP receiver."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from bot.review.export import export_name
from bot.testing.chat import FakeChat, FakeMessage
from bot.webhooks import WebhookDeliverer
from tests.bot.webhooks.conftest import SECRET
from tests.bot.webhooks.receiver import Receiver, Reply
from tests.waiting import wait_for


def rendered(chat: FakeChat, command: str) -> tuple[Any, list[FakeMessage]]:
    reply = chat.command(command)
    chat.run_until_idle()
    return reply.thread, chat.images(reply.thread)


def webhook(chat: FakeChat) -> WebhookDeliverer:
    assert chat.service.webhook is not None, "the webhook is configured in conftest"
    return chat.service.webhook


def key_of(chat: FakeChat, image: FakeMessage) -> str:
    record = chat.service.state.image(image.ref)
    assert record is not None
    return export_name(record)


def status_of(chat: FakeChat, key: str) -> str | None:
    record = webhook(chat).outbox.record(key)
    return record.status if record else None


def deliver_until(chat: FakeChat, done: Callable[[], object], *, timeout: float = 10) -> None:
    """Run the deliverer's passes in the test's thread until ``done()``."""

    def one_pass() -> object:
        webhook(chat).deliver_due()
        return done()

    wait_for(one_pass, timeout=timeout, what="the deliveries")


def test_an_approved_image_reaches_the_cms_once_signed_with_its_sidecar_and_png(
    chat: FakeChat, receiver: Receiver, verify: Callable[..., bool]
):
    thread, images = rendered(chat, "/imagine a teapot on a marble table --n 2 --steps 2 --seed 7")
    receiver.script(500)  # the CMS fails once, then takes it
    stop = threading.Event()
    # The service's own event loop runs the deliveries beside it, as on every platform.
    pump = threading.Thread(target=chat.service.pump_until, args=(stop,), kwargs={"block_ms": 50})
    pump.start()
    try:
        chat.react(images[0], "approve", user="U2", event_id="Ev1")
        key = key_of(chat, images[0])
        wait_for(lambda: status_of(chat, key) == "delivered", what="the delivery")
    finally:
        stop.set()
        pump.join(10)
    assert not pump.is_alive()

    assert key == f"{chat.service.state.image(images[0].ref).job_id}-0-7"
    assert [(r.status, r.key, r.headers["X-Proofroom-Attempt"]) for r in receiver.requests] == [
        (500, key, "1"),
        (200, key, "2"),
    ]
    for request in receiver.requests:
        assert verify(SECRET.encode(), request.headers, request.body)
        assert not verify(b"another secret", request.headers, request.body)
        assert not verify(
            SECRET.encode(), request.headers, request.body.replace(b"teapot", b"kettle")
        )
        assert request.headers["X-Proofroom-Event"] == "image.approved"
        assert request.headers["Content-Type"] == "application/json"
    payload = receiver.requests[1].json
    folder = chat.bot_settings.export_path(chat.settings)
    assert payload["event"] == "image.approved"
    assert payload["idempotency_key"] == key
    assert payload["metadata"] == json.loads((folder / f"{key}.json").read_text())
    assert payload["approved_by"] == payload["metadata"]["approved_by"] == ["U2"]
    assert payload["metadata"]["prompt"] == "a teapot on a marble table"
    assert payload["chat"] == {
        "platform": "fake",
        "channel": images[0].ref.channel,
        "thread": thread.id,
        "message": images[0].ref.id,
    }
    png = base64.b64decode(payload["image"]["base64"])
    assert png == (folder / f"{key}.png").read_bytes() == images[0].data
    assert payload["image"]["sha256"] == hashlib.sha256(png).hexdigest()
    assert payload["image"]["filename"] == f"{key}.png"
    assert payload["image"]["bytes"] == len(png)
    assert status_of(chat, key) == "delivered"

    # The platform repeats the reaction, a second reviewer approves too (the export is
    # written again), and the first one's vote comes back: nothing more is sent.
    chat.react(images[0], "approve", user="U2", event_id="Ev1")
    chat.react(images[0], "approve", user="U3")
    chat.unreact(images[0], "approve", user="U3")
    assert webhook(chat).deliver_due() == 0
    assert len(receiver.requests) == 2
    assert not any("CMS" in m.text for m in chat.thread(thread)), "no failure to tell"


def test_two_bots_on_one_redis_send_each_approval_once(chat: FakeChat, receiver: Receiver):
    thread, images = rendered(chat, "/imagine a paper crane --n 3 --steps 2")
    first = chat.service
    second = chat.restart()  # a second bot process on the same Redis and platform
    receiver.script(*[Reply(200, delay_s=0.1)] * 3)  # slow answers: both bots see them due
    stop = threading.Event()
    bots = [first.webhook, second.webhook]
    for bot in bots:
        bot.poll_s = 0.005  # both look at the outbox all the time
    with bots[0].running(stop), bots[1].running(stop):
        for image in images:
            chat.react(image, "approve", user="U2")
        keys = [key_of(chat, image) for image in images]
        wait_for(
            lambda: all(status_of(chat, key) == "delivered" for key in keys),
            what="three deliveries",
        )
        stop.set()
    assert sorted(r.key for r in receiver.requests) == sorted(keys)


def test_a_refusal_is_not_retried_and_the_thread_is_told_once(chat: FakeChat, receiver: Receiver):
    thread, (image,) = rendered(chat, "/imagine a kite --n 1 --steps 2")
    receiver.script(Reply(404))
    chat.react(image, "approve", user="U2")
    key = key_of(chat, image)
    deliver_until(chat, lambda: status_of(chat, key) == "failed")

    assert [r.status for r in receiver.requests] == [404]
    record = webhook(chat).outbox.record(key)
    assert (record.attempts, record.error) == (1, "HTTP 404: ok")
    told = [m.text for m in chat.thread(thread) if "CMS" in m.text]
    assert told == [
        f"Image 1 (seed {chat.service.state.image(image.ref).seed}) is approved and exported, "
        "but I could not send it on to the CMS: the webhook refused it with HTTP 404. An admin "
        "can check the webhook settings (PROOFROOM_WEBHOOK_URL) and the bot's log for "
        f"delivery `{key}`."
    ]
    chat.react(image, "approve", user="U3")  # approved again: the failure stands, once
    assert webhook(chat).deliver_due() == 0
    assert len(receiver.requests) == 1
    assert len([m for m in chat.thread(thread) if "CMS" in m.text]) == 1


def test_5xx_408_429_and_no_answer_are_retried_until_the_attempts_run_out(
    chat: FakeChat, receiver: Receiver
):
    thread, (image,) = rendered(chat, "/imagine a lighthouse --n 1 --steps 2")
    # An answer later than webhook_timeout_s (1 s) counts as none; 4 attempts in all.
    receiver.script(
        Reply(503), Reply(200, delay_s=1.5), Reply(408), Reply(429, headers={"Retry-After": "0"})
    )
    chat.react(image, "approve", user="U2")
    key = key_of(chat, image)
    deliver_until(chat, lambda: status_of(chat, key) == "failed")

    assert sorted(r.status for r in receiver.requests) == [200, 408, 429, 503]
    assert {r.key for r in receiver.requests} == {key}
    assert sorted(r.headers["X-Proofroom-Attempt"] for r in receiver.requests) == [
        "1",
        "2",
        "3",
        "4",
    ]
    told = [m.text for m in chat.thread(thread) if "CMS" in m.text]
    assert len(told) == 1
    assert "after 4 attempts, the last one got HTTP 429" in told[0]
    assert webhook(chat).outbox.record(key).attempts == 4


def test_a_delivery_left_pending_by_a_stopped_bot_goes_out_after_the_restart(
    chat: FakeChat, receiver: Receiver
):
    thread, (image,) = rendered(chat, "/imagine a red bicycle --n 1 --steps 2")
    chat.react(image, "approve", user="U2")  # no event loop runs: the delivery waits
    key = key_of(chat, image)
    assert status_of(chat, key) == "pending"
    # The old bot died while sending it: its claim is still there for a moment.
    assert chat.service.webhook.outbox.claim(key, owner="dead-bot", lease_s=0.3)

    restarted = chat.restart()
    assert restarted.webhook.deliver_due() == 0, "another bot holds it"
    assert receiver.requests == []
    stop = threading.Event()
    with restarted.webhook.running(stop):
        wait_for(lambda: status_of(chat, key) == "delivered", what="the delivery")
        stop.set()
    assert [r.key for r in receiver.requests] == [key]
    assert receiver.requests[0].headers["X-Proofroom-Attempt"] == "1"


def test_an_approval_taken_back_before_it_went_out_is_not_sent(chat: FakeChat, receiver: Receiver):
    thread, (image,) = rendered(chat, "/imagine a blue vase --n 1 --steps 2")
    chat.react(image, "approve", user="U2")
    key = key_of(chat, image)
    chat.unreact(image, "approve", user="U2")
    assert status_of(chat, key) is None
    assert webhook(chat).deliver_due() == 0
    assert receiver.requests == []

    chat.react(image, "approve", user="U3")  # approved again: sent, once
    deliver_until(chat, lambda: status_of(chat, key) == "delivered")
    assert [r.json["approved_by"] for r in receiver.requests] == [["U3"]]
