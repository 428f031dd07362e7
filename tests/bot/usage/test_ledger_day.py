"""Acceptance: a scripted day through the fake chat (several users, a template, a plain
prompt, a CSV batch, approvals, a rejection, a vote taken back) on the real queue, Redis
and an embedded worker rendering the tiny model; then ``proofroom usage`` (the real command,
in process) sums exactly the jobs' ledger records, cost per image is GPU seconds x rate /
images, and the chart ``/imagine usage`` sends draws the ledger's numbers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import time_machine

from bot.cli import main
from bot.ports import Attachment, requester_key
from bot.testing.chat import FakeChat
from bot.usage.state import UsageState

DAY = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)  # a Tuesday
RATE, CLOUD = 0.5, 0.01
CSV = "product,style,lighting\nRed Widget,minimalist,studio\nBlue Widget,industrial,natural\n"


@pytest.fixture()
def settings(settings):
    return settings.model_copy(update={"gpu_hour_cost": RATE, "cloud_price_per_image": CLOUD})


def pngs(chat: FakeChat, thread) -> list:
    return [m for m in chat.images(thread) if m.filename and m.filename.endswith(".png")]


def usage_json(monkeypatch, capsys, settings, *args: str) -> dict:
    """``proofroom usage ... --format json`` against this test's Redis and key prefix."""
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("PROOFROOM_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("PROOFROOM_GPU_HOUR_COST", str(RATE))
    monkeypatch.setenv("PROOFROOM_CLOUD_PRICE_PER_IMAGE", str(CLOUD))
    monkeypatch.setenv("PROOFROOM_TIMEZONE", "UTC")
    capsys.readouterr()
    assert main(["usage", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_days_usage_adds_up_to_the_jobs_of_the_ledger(
    chat: FakeChat, settings, redis, monkeypatch, capsys
):
    with time_machine.travel(DAY, tick=True):
        mug = chat.command(
            '/imagine product-photo product="mug" style=luxury --n 2 --steps 1', user="U1"
        )
        bike = chat.command("/imagine a red bicycle --n 1 --steps 1", user="U2")
        data = CSV.encode()
        batch = chat.command(
            "/imagine batch product-photo --variations 1 --seed 5 --steps 1",
            user="U3",
            attachments=(Attachment("p.csv", "text/csv", len(data), data=data),),
        )
        assert mug.thread and bike.thread and batch.thread, chat.dump()
        chat.run_until_idle(timeout=180)
        chat.wait_for(lambda: len(pngs(chat, batch.thread)) == 2)
        mugs, bikes, rows = (
            pngs(chat, mug.thread),
            pngs(chat, bike.thread),
            pngs(chat, batch.thread),
        )
        assert (len(mugs), len(bikes), len(rows)) == (2, 1, 2)

        chat.react(mugs[0], "approve", user="U9")
        chat.react(mugs[1], "reject", user="U9")
        chat.react(rows[0], "approve", user="U9")
        chat.react(bikes[0], "approve", user="U9")
        chat.unreact(bikes[0], "approve", user="U9")  # taken back: pending again

        entries = UsageState(redis=redis, settings=settings).between(
            DAY.replace(hour=0).timestamp(), DAY.replace(hour=23).timestamp()
        )
        records = [e.record for e in entries]
        assert len(records) == 4  # two single jobs, the batch's two rows
        assert sum(r.images for r in records) == 5
        assert all(r.gpu_s > 0 and r.status == "done" for r in records)
        batch_jobs = [r for r in records if r.batch]
        assert len(batch_jobs) == 2
        assert {r.user for r in batch_jobs} == {requester_key(chat.adapter.platform, "U3")}
        gpu_s = sum(r.gpu_s for r in records)

        report = usage_json(
            monkeypatch, capsys, settings, "--since", "2026-11-10", "--by", "template"
        )
        total = report["total"]
        assert (total["jobs"], total["images"]) == (4, 5)
        assert (total["approved"], total["rejected"], total["pending"], total["failed"]) == (
            2,
            1,
            2,
            0,
        )
        assert total["approval_rate"] == pytest.approx(2 / 3, abs=1e-4)
        assert total["gpu_seconds"] == pytest.approx(gpu_s, abs=1e-3)
        cost = gpu_s * RATE / 3600
        assert total["cost"] == pytest.approx(cost, rel=1e-4)
        assert total["cost_per_image"] == pytest.approx(cost / 5, rel=1e-4)
        assert total["cost_per_approved_image"] == pytest.approx(cost / 2, rel=1e-4)
        assert total["saving"] == pytest.approx(5 * CLOUD - cost, rel=1e-4)
        groups = {g["template"]: g for g in report["groups"]}
        assert {name: g["images"] for name, g in groups.items()} == {
            "product-photo": 4,
            "(none)": 1,
        }
        assert sum(g["gpu_seconds"] for g in groups.values()) == pytest.approx(gpu_s, abs=2e-3)

        by_user = usage_json(monkeypatch, capsys, settings, "--since", "2026-11-10", "--by", "user")
        images = {g["user"]: g["images"] for g in by_user["groups"]}
        key = lambda user: requester_key(chat.adapter.platform, user)  # noqa: E731
        assert images == {key("U1"): 2, key("U3"): 2, key("U2"): 1}
        # A range without the day has none of it.
        later = usage_json(
            monkeypatch, capsys, settings, "--since", "2026-11-11", "--until", "2026-11-12"
        )
        assert later["total"]["images"] == 0

        answer = chat.command("/imagine usage week by template", user="U1")
        assert "5 images (2 approved, 1 rejected, 2 pending, 0 failed)" in answer.text, answer.text
        assert "product-photo" in answer.text
        [chart] = [f for f in chat.adapter.private if f.user == "U1"]
        assert chart.data.startswith(b"\x89PNG") and chart.filename.endswith(".png")
        drawn = chat.service.usage.last_chart
        assert drawn is not None
        assert [bar.day for bar in drawn.bars] == [date(2026, 11, 9), date(2026, 11, 10)]
        tuesday = drawn.bars[-1]
        assert (tuesday.approved, tuesday.rejected, tuesday.pending) == (
            total["approved"],
            total["rejected"],
            total["pending"],
        )
        assert drawn.bars[0].total == 0
