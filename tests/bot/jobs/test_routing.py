"""Routing by model at the bot: a job for a worker pool that no worker has served within the
grace window is refused at once, naming its model; inside the window (the pool served a
moment ago, or the bot just started) it is queued and the reply says it waits for a worker.

The fake chat on the real Redis, without a worker process: who serves what is what real
heartbeats wrote (``engine.recovery.Heartbeat`` of RQ workers registered here, never
working). The bot's age is injected (``Routing.started``); a pool served long ago is a beat
stamped in the past on Redis's clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib
from rq import Queue

from bot.calendars.model import Calendar
from bot.jobs.routing import NoWorkerError, Routing, routing_for
from bot.ports import Attachment
from bot.settings import BotSettings
from bot.testing.chat import FakeChat
from engine.catalog import Catalog
from engine.pools import PoolDirectory
from engine.queue import queue_names
from engine.recovery import Heartbeat, RecoveryConfig
from engine.settings import Settings
from engine.worker import make_worker
from tests.engine.pool_fixtures import with_pools

GRACE_S = 300.0
WAITING = "waiting for a worker that serves `turbo`"


@pytest.fixture()
def pooled(settings: Settings, tmp_path: Path) -> Settings:
    return with_pools(settings, tmp_path / "templates").model_copy(update={"pool_grace_s": GRACE_S})


@pytest.fixture()
def chat(pooled: Settings, redis: redis_lib.Redis, bot_settings: BotSettings) -> Iterator[FakeChat]:
    conversation = FakeChat(settings=pooled, redis=redis, bot_settings=bot_settings, worker=False)
    yield conversation
    conversation.close()


def routing(chat: FakeChat) -> Routing:
    found = chat.service.resolver.routing
    assert found is not None, "a bot on REDIS_URL checks its pools"
    return found


def age(chat: FakeChat, seconds: float) -> None:
    """The bot started ``seconds`` ago."""
    found = routing(chat)
    found.started = found.clock() - seconds


def serve(settings: Settings, redis: redis_lib.Redis, *pools: str) -> Heartbeat:
    """A worker serving ``pools``, registered with RQ and beating once (as its heartbeat
    thread does every few seconds)."""
    worker = make_worker(settings=settings, redis=redis, pools=list(pools))
    worker.register_birth()
    heartbeat = Heartbeat(
        redis=redis, settings=settings, worker_name=worker.name, config=RecoveryConfig()
    )
    heartbeat.beat()
    return heartbeat


def waiting_jobs(settings: Settings, redis: redis_lib.Redis) -> int:
    names = queue_names(settings, ["sd15", "turbo"])
    return sum(Queue(name, connection=redis).count for name in names)


def csv_attachment(rows: list[str]) -> tuple[Attachment, ...]:
    data = ("product\n" + "\n".join(rows) + "\n").encode()
    return (Attachment(filename="mugs.csv", content_type="text/csv", size=len(data), data=data),)


# -- single jobs ---------------------------------------------------------------------------


def test_a_job_for_a_pool_never_served_is_refused_at_once_naming_its_model(chat, pooled, redis):
    age(chat, GRACE_S + 1)

    reply = chat.command("/imagine a red mug --model tiny-turbo")

    assert reply.text.startswith(
        "No worker has served model `tiny-turbo` (worker pool `turbo`) in the last 5 minutes, "
        "so nothing was queued. Ask whoever runs Proofroom to start one with "
        "`proofroom worker --pools turbo`"
    ), reply.text
    assert reply.thread is None and chat.adapter.messages == {}
    assert waiting_jobs(pooled, redis) == 0
    assert not chat.service.state.open_jobs("fake")


def test_a_bot_started_before_its_workers_queues_and_says_what_the_job_waits_for(
    chat, pooled, redis
):
    age(chat, GRACE_S - 5)  # still inside the window counted from the bot's start

    reply = chat.command("/imagine a red mug --model tiny-turbo")

    assert reply.text.startswith("Queued job `"), reply.text
    assert "place 1 in line, " + WAITING in reply.text
    assert "`proofroom worker --pools turbo` starts one" in reply.text
    assert waiting_jobs(pooled, redis) == 1
    status = chat.command("/imagine status")
    assert "queued, place 1, " + WAITING in status.text, status.text


def test_a_pool_served_a_moment_ago_waits_and_one_served_long_ago_is_refused(chat, pooled, redis):
    age(chat, 3600)
    serve(pooled, redis, "turbo").stop()  # served, then stopped cleanly: a restart, say

    reply = chat.command("/imagine a red mug --model tiny-turbo")
    assert reply.text.startswith("Queued job `") and WAITING in reply.text, reply.text

    # The same pool, last served two hours ago on Redis's clock.
    directory = PoolDirectory(redis=redis, settings=pooled)
    redis.hset(directory.seen_key, "turbo", directory.now_ms() - 2 * 3600 * 1000)
    refused = chat.command("/imagine a red mug --model tiny-turbo")
    assert refused.text.startswith("No worker has served model `tiny-turbo`"), refused.text
    assert "(the last one was seen 2 hours ago)" in refused.text
    assert waiting_jobs(pooled, redis) == 1  # the first one only


def test_a_live_worker_serves_its_pool_and_only_its_pool(chat, pooled, redis):
    age(chat, 3600)
    heartbeat = serve(pooled, redis, "turbo")

    served = chat.command("/imagine a red mug --model tiny-turbo")
    assert served.text.startswith("Queued job `") and "waiting" not in served.text, served.text

    other = chat.command("/imagine a red mug --model tiny")  # pool sd15: nobody, ever
    assert other.text.startswith("No worker has served model `tiny` (worker pool `sd15`)")
    assert "--pools sd15" in other.text
    heartbeat.stop()


# -- batches and calendars -----------------------------------------------------------------


def test_a_batch_for_a_pool_without_workers_is_refused_whole(chat, pooled, redis):
    age(chat, 3600)
    serve(pooled, redis, "sd15")  # the default model's pool has a worker; turbo has none

    reply = chat.command(
        "/imagine batch mug --model tiny-turbo",
        attachments=csv_attachment(["red", "green", "blue"]),
    )

    assert reply.text.startswith("No worker has served model `tiny-turbo`"), reply.text
    assert chat.adapter.messages == {}  # no batch thread, no progress message
    assert waiting_jobs(pooled, redis) == 0
    assert chat.service.batches.batches.latest(chat.channel) is None


def test_a_batch_inside_the_window_is_queued_whole_and_says_it_waits(chat, pooled, redis):
    age(chat, 10)

    reply = chat.command(
        "/imagine batch mug --model tiny-turbo", attachments=csv_attachment(["red", "green"])
    )

    assert reply.text.startswith("Queued batch `b"), reply.text
    assert "images on the bulk queue, " + WAITING in reply.text
    assert waiting_jobs(pooled, redis) == 2


def test_a_calendar_week_for_a_pool_without_workers_is_posted_once_one_serves_it(
    chat, pooled, redis
):
    calendars = {
        "mugs": Calendar(
            name="mugs",
            platform="fake",
            channel="C-MKT",
            schedule="0 9 * * MON",
            timezone="UTC",
            weeks_of_month={
                n: {
                    "title": "Mugs",
                    "template": "mug",
                    "model": "tiny-turbo",
                    "variations": 1,
                    "variables": {"product": "red"},
                }
                for n in range(1, 6)
            },
        )
    }
    monday = datetime(2026, 11, 30, 9, 1, tzinfo=UTC)
    desk = chat.service.calendar_desk(calendars=calendars, clock=lambda: monday)
    age(chat, 3600)

    assert desk.tick(force=True) == []  # refused: no thread, no job; tried again next tick
    assert chat.adapter.messages == {} and waiting_jobs(pooled, redis) == 0

    heartbeat = serve(pooled, redis, "turbo")
    assert desk.tick(force=True) == ["mugs 2026-W49"]
    assert waiting_jobs(pooled, redis) == 1
    heartbeat.stop()


# -- where there is nothing to check -------------------------------------------------------


def test_the_embedded_default_checks_no_pools(pooled, redis):
    catalog = Catalog.load(pooled.templates_dir)
    embedded = pooled.model_copy(update={"redis_url": None})
    assert routing_for(redis=redis, settings=embedded, catalog=catalog) is None
    assert routing_for(redis=redis, settings=pooled, catalog=catalog) is not None


def test_the_refusal_is_a_user_error_with_the_model_and_pool(chat, pooled, redis):
    age(chat, 3600)
    with pytest.raises(NoWorkerError) as refused:
        routing(chat).check(["tiny", "tiny-turbo"])
    assert (refused.value.model, refused.value.pool, refused.value.kind) == (
        "tiny",
        "sd15",
        "no_worker",
    )
