"""``/imagine usage [week|month] [by user|template|channel|model]``: the figures of this week
or month so far as a table in the answer, and a chart of images per day (approved, rejected,
pending) given to the asker alone (``ChatAdapter.upload_private``: a direct message where
a command's answer cannot carry a file)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import cast
from zoneinfo import ZoneInfo

from bot.ports import ChatAdapter, CommandEvent
from bot.usage.chart import ChartData, chart_data, render_png
from bot.usage.periods import PERIODS, Period, label, period_range
from bot.usage.report import (
    GROUPS,
    GroupBy,
    Rates,
    Report,
    Totals,
    as_table,
    build_report,
    duration,
    money_format,
)
from bot.usage.state import UsageState

log = logging.getLogger(__name__)


class UsageDesk:
    """Answers ``usage``; ``clock`` (an aware datetime) for tests that freeze time."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        usage: UsageState,
        rates: Rates,
        zone: ZoneInfo,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.adapter = adapter
        self.usage = usage
        self.rates = rates
        self.zone = zone
        self.clock = clock or (lambda: datetime.now(zone))
        self.last_chart: ChartData | None = None  # what the last answer drew

    def command(self, argument: str | None, *, event: CommandEvent) -> str:
        """The answer to ``usage`` (``argument``: ``"PERIOD GROUP"`` from the grammar)."""
        words = (argument or "week user").split()
        period = cast(Period, words[0] if words and words[0] in PERIODS else "week")
        by = cast(GroupBy, words[1] if len(words) > 1 and words[1] in GROUPS else "user")
        start, end = period_range(period, now=self.clock(), zone=self.zone)
        entries = self.usage.between(start.timestamp(), end.timestamp())
        report = build_report(
            entries, by=by, start=start.timestamp(), end=end.timestamp(), rates=self.rates
        )
        span = label(start, end, zone=self.zone)
        if not entries:
            return f"No images were rendered this {period} ({span}) yet."
        data = chart_data(
            entries, start=start, end=end, zone=self.zone, title=f"Images per day, {span}"
        )
        self.last_chart = data
        sent = self._send_chart(data, event=event, period=period)
        return summary(report, period=period, span=span, chart_sent=sent)

    def _send_chart(self, data: ChartData, *, event: CommandEvent, period: str) -> bool:
        try:
            self.adapter.upload_private(
                channel=event.channel,
                user=event.user,
                data=render_png(data),
                filename=f"usage-{period}-{data.bars[-1].day}.png",
                text=data.title,
            )
        except Exception:  # the figures still answer; the chart is the extra
            log.warning("could not send the usage chart to %s", event.user, exc_info=True)
            return False
        return True


class UsageFigures:
    """The figures of some jobs in one line: the calendar digest's week."""

    def __init__(self, *, usage: UsageState, rates: Rates) -> None:
        self.usage = usage
        self.rates = rates

    def line(self, job_ids: Sequence[str]) -> str:
        """``Usage: 4 images in 12.5s of GPU time, ...`` over ``job_ids`` (those the ledger
        has; a job not ended yet counts nothing)."""
        totals = Totals()
        for job_id in job_ids:
            entry = self.usage.entry(job_id)
            if entry is not None:
                totals.add(entry)
        return figures_sentence(totals, self.rates)


def figures_sentence(totals: Totals, rates: Rates) -> str:
    """Images, GPU time, cost per image and per approved image, approval rate, saving."""
    money = money_format(rates.currency)
    rate = totals.approval_rate
    return (
        f"Usage: {totals.images} images in {duration(totals.gpu_s)} of GPU time, "
        f"{money(totals.cost_per_image(rates))} per image, "
        f"{money(totals.cost_per_approved(rates))} per approved image, "
        f"approval rate {'-' if rate is None else f'{rate:.0%}'}, "
        f"{money(totals.saving(rates))} saved against the cloud price."
    )


def summary(report: Report, *, period: str, span: str, chart_sent: bool) -> str:
    """The chat answer: totals in one sentence, the table, the rates it used."""
    total, rates = report.total, report.rates
    money = f"{rates.currency}{{:,.2f}}"
    lines = [
        f"Usage this {period} ({span}), by {report.by}: {total.images} images "
        f"({total.approved} approved, {total.rejected} rejected, {total.pending} pending, "
        f"{total.failed} failed) in {duration(total.gpu_s)} of GPU time, "
        f"costing {money.format(total.cost(rates))} here against "
        f"{money.format(total.cloud_cost(rates))} in the cloud.",
        "```",
        as_table(report),
        "```",
        f"Rates: {rates.currency}{rates.gpu_hour_cost:g} per GPU-hour here, "
        f"{rates.currency}{rates.cloud_price_per_image:g} per image in the cloud. "
        "`proofroom usage` gives CSV or JSON for any range.",
    ]
    if chart_sent:
        lines.append("The chart of images per day is on its way to you.")
    return "\n".join(lines)
