"""The pure parts of usage: the grammar of ``/imagine usage``, week and month ranges in a time
zone, the figures and their formats, and the chart's data (the day a job counts for is its
day in the configured zone)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.grammar.parse import BadCommand, MetaCommand, parse
from bot.usage.chart import chart_data, render_png
from bot.usage.periods import days_between, period_range
from bot.usage.report import Rates, as_csv, as_table, build_report
from engine.ledger import LedgerEntry, UsageRecord
from engine.model_folders import load_catalog

BERLIN = ZoneInfo("Europe/Berlin")
RATES = Rates(gpu_hour_cost=0.36, cloud_price_per_image=0.007)


@pytest.fixture(scope="module")
def catalog():
    from engine.settings import Settings

    return load_catalog(Settings(_env_file=None))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        ("usage", "week user"),
        ("usage month", "month user"),
        ("usage by template", "week template"),
        ("usage week by channel", "week channel"),
        ("USAGE Month BY Model", "month model"),
    ],
)
def test_usage_commands_parse_to_a_period_and_a_group(catalog, text, argument):
    assert parse(text, catalog=catalog) == MetaCommand("usage", argument)


def test_a_bad_group_is_a_sentence_and_other_words_are_a_prompt(catalog):
    bad = parse("usage by colour", catalog=catalog)
    assert isinstance(bad, BadCommand)
    assert "user, template, channel or model" in bad.message
    assert not isinstance(parse("usage of light in a cathedral", catalog=catalog), MetaCommand)


def test_week_and_month_start_at_midnight_in_the_zone():
    # Monday 2026-11-30 00:30 in Berlin is still Sunday in UTC.
    now = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    start, end = period_range("week", now=now, zone=BERLIN)
    assert start == datetime(2026, 11, 30, tzinfo=BERLIN) and end == now
    start, _ = period_range("month", now=now, zone=BERLIN)
    assert start == datetime(2026, 11, 1, tzinfo=BERLIN)
    start, _ = period_range("week", now=now, zone=ZoneInfo("UTC"))
    assert start == datetime(2026, 11, 23, tzinfo=UTC)


def entry(job: str, *, ended: datetime, gpu_s: float, outcomes: list[str], **fields) -> LedgerEntry:
    record = UsageRecord(
        job_id=job,
        ended_at=ended.timestamp(),
        user=fields.pop("user", "slack:U1"),
        model="tiny",
        count=len(outcomes),
        images=sum(1 for o in outcomes if o != "failed"),
        steps=1,
        width=64,
        height=64,
        gpu_s=gpu_s,
        **fields,
    )
    return LedgerEntry(record=record, outcomes=dict(enumerate(outcomes)))  # type: ignore[arg-type]


ENTRIES = [
    entry("a", ended=datetime(2026, 11, 30, 8, tzinfo=UTC), gpu_s=30.0,
          outcomes=["approved", "rejected", "pending", "failed"], template="product-photo"),
    entry("b", ended=datetime(2026, 11, 30, 23, 30, tzinfo=UTC), gpu_s=6.0,
          outcomes=["approved"], user="slack:U2"),
]  # fmt: skip


def test_figures_follow_their_definitions_and_every_format_agrees():
    report = build_report(ENTRIES, by="user", start=0, end=1, rates=RATES)
    total = report.total
    assert (total.images, total.approved, total.rejected, total.pending, total.failed) == (
        4, 2, 1, 1, 1,
    )  # fmt: skip
    assert total.cost(RATES) == pytest.approx(36.0 * 0.36 / 3600)
    assert total.cost_per_image(RATES) == pytest.approx(36.0 * 0.36 / 3600 / 4)
    assert total.cost_per_approved(RATES) == pytest.approx(36.0 * 0.36 / 3600 / 2)
    assert total.approval_rate == pytest.approx(2 / 3)
    assert total.saving(RATES) == pytest.approx(4 * 0.007 - 36.0 * 0.36 / 3600)
    rows = list(csv.DictReader(io.StringIO(as_csv(report))))
    assert [r["user"] for r in rows] == ["slack:U1", "slack:U2", "TOTAL"]
    assert float(rows[-1]["cost_per_image"]) == pytest.approx(total.cost_per_image(RATES))
    table = as_table(report).splitlines()
    assert table[0].split()[:3] == ["user", "images", "GPU"]
    assert table[-1].split()[:3] == ["total", "4", "36.0s"]
    assert "67%" in table[-1]


def test_the_chart_counts_each_job_on_its_day_in_the_zone():
    start = datetime(2026, 11, 30, tzinfo=BERLIN)
    end = datetime(2026, 12, 2, 12, tzinfo=BERLIN)
    data = chart_data(ENTRIES, start=start, end=end, zone=BERLIN, title="t")
    assert [b.day for b in data.bars] == days_between(start, end, zone=BERLIN)
    assert [(b.day, b.approved, b.rejected, b.pending) for b in data.bars] == [
        (date(2026, 11, 30), 1, 1, 1),
        (date(2026, 12, 1), 1, 0, 0),  # 23:30 UTC is past midnight in Berlin
        (date(2026, 12, 2), 0, 0, 0),
    ]
    assert render_png(data).startswith(b"\x89PNG")
