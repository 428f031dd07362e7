"""Commands without a worker: immediate answers, errors, status, cancel, meta commands."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.ports import CommandEvent
from bot.service import BotService
from bot.settings import BotSettings
from bot.testing.chat import FakeAdapter, FakeChat
from engine.errors import UserError
from engine.events import JobEvent
from tests.redis_server import free_port
from tests.waiting import wait_for


@pytest.fixture()
def quiet(settings, redis, bot_settings: BotSettings) -> Iterator[FakeChat]:
    """A channel whose jobs stay queued: no worker."""
    yield FakeChat(settings=settings, redis=redis, bot_settings=bot_settings, worker=False)


def test_a_usage_error_is_answered_and_nothing_is_posted_or_queued(quiet: FakeChat):
    reply = quiet.command("/imagine a cat --sed 3")
    assert reply.text == "Unknown flag --sed; did you mean --seed?"
    assert reply.thread is None
    assert not quiet.adapter.messages
    assert not quiet.service.state.open_jobs(quiet.adapter.platform)


def test_limits_are_checked_before_anything_is_queued(quiet: FakeChat):
    reply = quiet.command("/imagine a cat --steps 500")
    assert reply.text == "Steps must be between 1 and 60; you asked for 500"
    reply = quiet.command("/imagine a cat --model sdxl --lora tiny-style")
    assert "made for sd15 models and cannot be used with a sdxl model" in reply.text
    reply = quiet.command("/imagine furniture")
    assert "needs `name`" in reply.text and "as an ordinary word" in reply.text
    reply = quiet.command("/imagine character design of a robot")
    assert "To use `character` as an ordinary word" in reply.text
    assert "as an ordinary word" not in quiet.command("/imagine character pose=sitting").text
    reply = quiet.command("/imagine a cat --strength 0.5")
    assert reply.text.startswith("--strength says how far to move from an attached image")
    reply = quiet.command("/imagine a cat --variations 3")
    assert reply.text.startswith("--variations is for batches; to get variations of an image")
    assert not quiet.adapter.messages


def test_a_templated_command_with_a_lora_and_an_aspect_is_queued(quiet: FakeChat):
    for k in range(7):
        reply = quiet.command(
            f"/imagine product-photo product=mug{k} --lora tiny-style:0.5 --ar 3:2"
        )
        assert reply.text.startswith("Queued job"), reply.text


def test_ar_gives_the_model_pixel_count_in_multiples_of_8(quiet: FakeChat):
    reply = quiet.command("/imagine a wide street --ar 3:2 --n 1")
    job_id = re.search(r"job `(\w+)`", reply.text).group(1)
    spec = quiet.service.state.job(job_id).spec
    assert (spec.width, spec.height) == (96, 64)
    assert spec.origin == {
        "platform": "fake",
        "channel": "C1",
        "thread": reply.thread.id,
        "requester": "U1",
    }
    assert spec.requested_by == "fake:U1"


def test_status_lists_your_jobs_and_cancel_takes_a_prefix(quiet: FakeChat):
    first = quiet.command("/imagine a boat --n 1")
    quiet.command("/imagine a plane --n 1")
    quiet.command("/imagine a train --n 1", user="U2")
    job_id = re.search(r"job `(\w+)`", first.text).group(1)

    status = quiet.command("/imagine status").text
    assert status.count("queued, place") == 2
    assert "a boat" in status and "a plane" in status and "a train" not in status

    assert quiet.command(f"/imagine cancel {job_id}", user="U2").text.startswith("You have no job")
    assert quiet.command(f"/imagine cancel {job_id[:6]}").text.startswith(
        f"Cancelling job `{job_id}`"
    )
    quiet.wait_for(lambda: "Cancelled" in quiet.thread(first.thread)[-1].text, timeout=10)
    assert "a boat" not in quiet.command("/imagine status").text
    # A progress event read again after the cancel (its first delivery failed) changes
    # nothing: the end stays shown.
    quiet.service.events.publish(JobEvent(job_id=job_id, kind="progress", step=3, total=10))
    while quiet.pump(block_ms=10):
        pass
    assert "Cancelled" in quiet.thread(first.thread)[-1].text


def test_meta_commands_list_what_can_be_named(quiet: FakeChat):
    assert "--ar 3:2" in quiet.command("/imagine help").text
    templates = quiet.command("/imagine templates").text
    assert "`product-photo`: catalog-ready product shot" in templates
    assert "product, style=minimalist" in templates
    assert "`tiny` (sd15, 64x64" in quiet.command("/imagine models").text
    assert (
        "`tiny-style` for sd15, weight 0.8, adds `tinystyle`"
        in quiet.command("/imagine loras").text
    )
    detail = quiet.command("/imagine help product-photo").text
    assert (
        "`product` (required)" in detail
        and 'Example: `/imagine product-photo product="..."`' in detail
    )
    assert "did you mean `product-photo`" in quiet.command("/imagine help prodct-photo").text
    assert (
        quiet.command("/imagine review").text
        == "No images in this channel are waiting for a decision."
    )


def test_when_the_thread_cannot_be_opened_nothing_is_queued_and_the_user_is_told(quiet: FakeChat):
    quiet.adapter.fail = lambda kind: UserError("I can't post in <#C1>: invite me first.")
    assert quiet.command("/imagine a cat").text == "I can't post in <#C1>: invite me first."
    quiet.adapter.fail = lambda kind: ConnectionError("chat API down")
    reply = quiet.command("/imagine a cat")
    assert reply.text.startswith("Something went wrong on our side and nothing was queued")
    assert "Traceback" not in reply.text
    quiet.adapter.fail = None
    assert "You have no jobs" in quiet.command("/imagine status").text
    assert not quiet.service.state.open_jobs(quiet.adapter.platform)


def test_a_failure_on_our_side_is_a_sentence_with_a_reference(settings, caplog):
    service = BotService.build(
        adapter=FakeAdapter(), settings=settings, bot_settings=BotSettings(), redis=_away()
    )
    reply = service.handle_command(CommandEvent("fake", "U1", "C1", "status"))
    assert reply.startswith("Something went wrong on our side and nothing was queued (reference ")
    reference = reply.split("(reference ")[1].split(")")[0]
    assert any(reference in r.getMessage() for r in caplog.records)  # findable in the log


def _away() -> redis_lib.Redis:
    """A client of a port nobody listens on: every call fails, as while Redis restarts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return redis_lib.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)


class _Counting(redis_lib.Redis):
    """A client that counts the commands it was asked to send."""

    sent = 0

    def execute_command(self, *args, **options):
        self.sent += 1
        return super().execute_command(*args, **options)


def test_the_event_pump_outlives_a_redis_outage_and_stops_when_told(
    settings, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    client = _Counting(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    service = BotService.build(
        adapter=FakeAdapter(), settings=settings, bot_settings=BotSettings(), redis=client
    )
    stop = threading.Event()
    runner = threading.Thread(target=service.pump_until, args=(stop,), kwargs={"block_ms": 50})
    runner.start()
    wait_for(lambda: service.outage.down and client.sent >= 3, what="three failed reads")
    assert runner.is_alive()  # still trying, with backoff
    lines = [r.getMessage() for r in caplog.records]
    # One line for the whole outage, not a traceback per try.
    assert sum("Redis is unreachable" in line for line in lines) == 1, lines
    assert not any("event pump failed" in line for line in lines), lines
    stop.set()
    runner.join(3)
    assert not runner.is_alive()
