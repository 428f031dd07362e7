"""The Discord API failing under the real bot (discord.py against the local fake, the real
service, a worker process, the real Redis):

- HTTP 500 (discord.py repeats it itself), 503 (it does not: the event is read again)
  on posts and edits: every image arrives once, the progress message ends at Done;
- 403 Missing Access mid-job on the thread and its channel: the images stay in the store,
  the requester is told by direct message to repost, and ``repost`` (the ``/imagine``
  prompt ``repost JOB``) posts them once access is back;
- an image post sent again after its answer was lost (a retry, a restarted bot) makes no
  second message: job images carry a nonce that Discord enforces.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from bot.adapters.discord.settings import DiscordSettings
from bot.service import BotService
from bot.settings import BotSettings
from engine.events import EventStream
from engine.settings import Settings
from tests.bot.adapters.discord.conftest import BotHarness, discord_settings, fake_discord
from tests.bot.adapters.discord.fake_discord import CHANNEL_ID, FakeDiscord
from tests.bot.adapters.discord.gateway import command_interaction, option
from tests.bot.adapters.discord.images import encoded
from tests.engine.jobs_fixtures import WorkerProcess, wait_kind
from tests.waiting import wait_for

__all__ = ["discord_settings", "fake_discord"]  # fixtures

REQUESTER = "1600000000000000001"
MISSING_ACCESS = {"message": "Missing Access", "code": 50001}


@pytest.fixture()
def bot(
    stack: tuple[Settings, redis_lib.Redis, WorkerProcess],
    fake_discord: FakeDiscord,
    discord_settings: DiscordSettings,
) -> Iterator[BotHarness]:
    """The real Discord bot (client, adapter, service) on these tests' prefix, logged in to
    the fake, once the shared worker is warm."""
    settings, client, worker = stack
    bot_settings = BotSettings(_env_file=None, export_dir=settings.data_dir / "approved")  # type: ignore[call-arg]

    def service(adapter: Any) -> BotService:
        return BotService.build(
            adapter=adapter, settings=settings, bot_settings=bot_settings, redis=client
        )

    worker.wait_ready(client, timeout=120)
    harness = BotHarness(
        fake=fake_discord,
        settings=settings,
        discord_settings=discord_settings,
        service_factory=service,
    ).start()
    yield harness
    harness.close()


def imagine(bot: BotHarness, prompt: str, **options: Any) -> str:
    """``/imagine prompt:<prompt>`` from the requester; the bot's (ephemeral) reply."""
    interaction = command_interaction(
        "imagine",
        [option("prompt", prompt), *(option(k, v) for k, v in options.items())],
        user_id=REQUESTER,
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    return bot.reply_to(interaction)


def thread_of(fake: FakeDiscord, job_id: str) -> str:
    """The thread of ``job_id``: the id of its card in the channel."""
    return next(
        m["id"]
        for m in fake.messages.values()
        if m["channel_id"] == CHANNEL_ID and job_id in m["content"]
    )


def images_in(fake: FakeDiscord, thread: str) -> list[str]:
    """File names of the images posted (answered 200) in ``thread``, in order."""
    return [
        name
        for c in fake.calls_to("POST", f"/channels/{thread}/messages")
        if c.status == 200
        for name, _ in c.files
    ]


def progress_text(fake: FakeDiscord, thread: str) -> str:
    """What the thread's one progress message says now ("" before it is posted)."""
    messages = [
        m
        for m in list(fake.messages.values())
        if m["channel_id"] == thread and not m["attachments"]
    ]
    assert len(messages) <= 1, [m["content"] for m in messages]
    return str(messages[0]["content"]) if messages else ""


@pytest.mark.slow
def test_server_errors_are_retried_and_access_lost_mid_job_waits_for_repost(
    bot: BotHarness,
    fake_discord: FakeDiscord,
    stack: tuple[Settings, redis_lib.Redis, WorkerProcess],
) -> None:
    fake = fake_discord
    settings, client, worker = stack
    events = EventStream(redis=client, settings=settings)

    # Transient: the job card meets a 500 (discord.py repeats it), the first progress edit
    # a 503 and the first post in the thread a 503 (the event is read again).
    fake.fail("POST", "/channels/", status=500, body={"message": "Internal", "code": 0})
    fake.fail("PATCH", "/channels/", status=503, body={"message": "Unavailable", "code": 0})
    reply = imagine(bot, "a lighthouse at dusk", count=2, steps=2, seed=3)
    job_id = reply.split("`")[1]
    thread = thread_of(fake, job_id)
    fake.fail("POST", f"/channels/{thread}/", status=503, body={"message": "x", "code": 0})
    wait_for(lambda: len(images_in(fake, thread)) >= 2, timeout=90, what="two images")
    time.sleep(1.0)  # time for a stray repeat to show
    names = images_in(fake, thread)
    assert len(names) == 2 and len(set(names)) == 2, names
    assert [c.status for c in fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")][:2] == [
        500,
        200,
    ]
    assert 503 in [c.status for c in fake.calls_to("PATCH", "/channels/")]
    assert 503 in [c.status for c in fake.calls_to("POST", f"/channels/{thread}/")]
    assert "Done: 2 images" in progress_text(fake, thread)

    # Permanent: the bot loses access to the channel (and so its threads) mid-job.
    reply = imagine(bot, "a teapot on a shelf", count=2, steps=8, seed=5)
    job_id = reply.split("`")[1]
    thread = thread_of(fake, job_id)
    wait_for(lambda: progress_text(fake, thread), what="the progress message")
    wait_kind(events, job_id, "progress", timeout=60)
    worker.signal(signal.SIGSTOP)  # paused meanwhile: the job surely ends after this
    for prefix in (f"/channels/{thread}", f"/channels/{CHANNEL_ID}"):
        for method in ("POST", "PATCH"):
            fake.fail(method, prefix, status=403, body=MISSING_ACCESS, times=1000)
    worker.signal(signal.SIGCONT)
    wait_for(lambda: events.terminal_kind(job_id), timeout=90, what="the job to end")

    def notices() -> list[str]:
        return [
            str((c.json or {}).get("content"))
            for c in fake.channel_posts()
            if f"repost {job_id}" in str((c.json or {}).get("content"))
        ]

    told = wait_for(notices, what="the requester told")
    time.sleep(1.0)
    assert len(notices()) == 1, notices()
    assert fake.calls_to("POST", "/users/@me/channels"), "told by direct message"
    assert "Missing Access" in told[0]
    assert images_in(fake, thread) == []

    fake.clear_failures()  # access is back
    assert imagine(bot, f"repost {job_id}") == f"Posted the images of job `{job_id}` in its thread."
    assert len(images_in(fake, thread)) == 2
    assert "Done: 2 images" in progress_text(fake, thread)
    assert "already in its thread" in imagine(bot, f"repost {job_id}")


def test_an_image_posted_again_after_a_lost_answer_is_not_posted_twice(
    fault_settings: tuple[Settings, redis_lib.Redis],
    fake_discord: FakeDiscord,
    discord_settings: DiscordSettings,
) -> None:
    """What a retry (or a restarted bot) does when a post landed but its answer was lost:
    the same image again. Discord's enforced nonce gives the first message back."""
    settings, _ = fault_settings
    harness = BotHarness(
        fake=fake_discord, settings=settings, discord_settings=discord_settings
    ).start()
    try:
        upload = {
            "channel": CHANNEL_ID,
            "thread": None,
            "data": encoded(),
            "filename": "job123-0-7.png",
            "text": "Image 1/1",
        }
        first = harness.adapter.upload(**upload, votable=True)
        again = harness.adapter.upload(**upload, votable=True)
        assert again.id == first.id
        posts = fake_discord.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")
        assert len(posts) == 2 and posts[0].json["nonce"] == posts[1].json["nonce"]
        assert images_in(fake_discord, CHANNEL_ID) == ["job123-0-7.png"] * 2  # two tries
        stored = [m for m in fake_discord.messages.values() if m["attachments"]]
        assert len(stored) == 1  # one message in the channel
        # Other files (a usage chart asked for twice) carry no nonce: each is its own post.
        harness.adapter.upload(**{**upload, "filename": "usage.png"})
        harness.adapter.upload(**{**upload, "filename": "usage.png"})
        assert len([m for m in fake_discord.messages.values() if m["attachments"]]) == 3
    finally:
        harness.close()
