"""Images per day: the (n+1)th image of a user's day is refused with the limit, the use and
the reset time in the configured zone; the count starts again at local midnight; a CSV
batch over the bulk limit is refused whole; admins are exempt. Frozen clock, real Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import time_machine

from bot.grammar.parse import ImagineRequest
from bot.ports import Attachment
from bot.quotas.desk import QuotaExceeded
from tests.bot.conftest import queued_jobs
from tests.bot.jobs.test_img2img_chat import attached, photo

# 18:47:30 in Berlin (UTC+1 in December): 5 h 12 min 30 s before its midnight.
BERLIN_EVENING = datetime(2026, 12, 3, 17, 47, 30, tzinfo=UTC)
# 23:59 and 00:01 in Tokyo (UTC+9): one minute either side of its midnight.
TOKYO_BEFORE_MIDNIGHT = datetime(2026, 12, 3, 14, 59, tzinfo=UTC)
TOKYO_AFTER_MIDNIGHT = datetime(2026, 12, 3, 15, 1, tzinfo=UTC)
CSV = "product,style\nMug,minimalist\nLamp,luxury\nVase,modern\n"


def csv_file(text: str = CSV) -> tuple[Attachment, ...]:
    data = text.encode()
    return (Attachment(filename="rows.csv", content_type="text/csv", size=len(data), data=data),)


def test_the_image_over_the_daily_limit_is_refused_with_use_limit_and_reset(
    quiet_chat, settings, redis
):
    chat = quiet_chat(quotas={"images_per_day": 5}, timezone="Europe/Berlin")
    with time_machine.travel(BERLIN_EVENING, tick=False):
        assert chat.command("a fox --n 4").text.startswith("Queued job")
        assert chat.command("a fox --n 1").text.startswith("Queued job")
        before = len(chat.adapter.messages)
        refused = chat.command("a fox --n 1")
    assert refused.text == (
        "You have used 5 of your 5 images for today and this needs 1 more, so nothing was "
        "queued; wait: the count resets at 00:00 Europe/Berlin (in 5 h 13 min)."
    )
    assert refused.thread is None and len(chat.adapter.messages) == before
    assert queued_jobs(settings, redis) == 2


def test_a_request_that_does_not_fit_says_how_many_still_fit(quiet_chat, settings, redis):
    chat = quiet_chat(quotas={"images_per_day": 5}, timezone="Europe/Berlin")
    with time_machine.travel(BERLIN_EVENING, tick=False):
        chat.command("a fox --n 3")
        refused = chat.command("a fox --n 4")
        assert "used 3 of your 5 images" in refused.text
        assert "ask for 2 or fewer" in refused.text
        assert chat.command("a fox --n 2").text.startswith("Queued job")
    assert queued_jobs(settings, redis) == 2


def test_the_count_starts_again_at_midnight_in_the_configured_zone(quiet_chat):
    chat = quiet_chat(quotas={"images_per_day": 2}, timezone="Asia/Tokyo")
    with time_machine.travel(TOKYO_BEFORE_MIDNIGHT, tick=False):
        assert chat.command("a fox --n 2").text.startswith("Queued job")
        refused = chat.command("a fox --n 1").text
        assert "resets at 00:00 Asia/Tokyo (in 1 min)" in refused
    # Still 3 December in UTC (and in Berlin): only Tokyo's day has turned.
    with time_machine.travel(TOKYO_AFTER_MIDNIGHT, tick=False):
        assert chat.command("a fox --n 2").text.startswith("Queued job")
        assert "used 2 of your 2 images" in chat.command("a fox --n 1").text


def test_each_user_has_a_count_of_their_own_and_admins_have_none(quiet_chat):
    chat = quiet_chat(quotas={"images_per_day": 1}, admin_ids=frozenset({"UADMIN"}))
    with time_machine.travel(BERLIN_EVENING, tick=False):
        assert chat.command("a fox --n 1", user="U1").text.startswith("Queued job")
        assert "used 1 of your 1 images" in chat.command("a fox --n 1", user="U1").text
        assert chat.command("a fox --n 1", user="U2").text.startswith("Queued job")
        for _ in range(3):
            assert chat.command("a fox --n 4", user="UADMIN").text.startswith("Queued job")


def test_a_csv_batch_over_the_bulk_limit_is_refused_whole(quiet_chat, settings, redis):
    chat = quiet_chat(quotas={"bulk_images_per_day": 5, "images_per_day": 1})
    with time_machine.travel(BERLIN_EVENING, tick=False):
        refused = chat.command("batch product-photo --variations 2", attachments=csv_file())
        assert refused.text.startswith(
            "You have used 0 of your 5 bulk images for today and this needs 6 more"
        ), refused.text
        assert refused.thread is None and not chat.adapter.messages
        assert queued_jobs(settings, redis) == 0
        assert chat.service.batches.batches.latest(chat.channel) is None
        # Nothing was reserved: a batch that fits goes through whole, and interactive images
        # are a count of their own.
        accepted = chat.command("batch product-photo --variations 1", attachments=csv_file())
        assert accepted.text.startswith("Queued batch"), accepted.text
        assert queued_jobs(settings, redis) == 3
        assert chat.command("a fox --n 1").text.startswith("Queued job")
        again = chat.command("batch product-photo --variations 1", attachments=csv_file())
        assert "used 3 of your 5 bulk images" in again.text
    assert queued_jobs(settings, redis) == 4


def test_two_requests_at_once_cannot_both_pass_the_limit(quiet_chat, settings, redis):
    chat = quiet_chat(quotas={"images_per_day": 4})
    specs = []
    for _ in range(8):
        resolved = chat.service.resolver.resolve(
            ImagineRequest(prompt="a fox", count=2), requested_by="fake:U1"
        )
        specs.append(resolved.spec)
    passed, refused = [], []
    start = threading.Barrier(len(specs))

    def take(spec) -> None:
        start.wait()
        try:
            passed.append(chat.service.quotas.reserve([spec], requester="U1"))
        except QuotaExceeded:
            refused.append(spec)

    threads = [threading.Thread(target=take, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(passed), len(refused)) == (2, 6)  # two requests of 2 images fit in 4


def test_a_refused_command_with_an_attached_image_stores_nothing(quiet_chat, settings):
    chat = quiet_chat(quotas={"images_per_day": 2})
    fox = attached("fox.png", photo())
    assert chat.command("a fox --strength 0.5 --n 2", attachments=(fox,)).text.startswith(
        "Queued job"
    )
    stored = sorted(p for p in settings.data_dir.rglob("*") if p.is_file())
    assert stored, "the accepted job's starting image is in the store"
    other = attached("owl.png", photo((80, 64)))  # another file: it would be a new entry
    refused = chat.command("a fox --strength 0.5 --n 1", attachments=(other,))
    assert "used 2 of your 2 images" in refused.text
    assert sorted(p for p in settings.data_dir.rglob("*") if p.is_file()) == stored
