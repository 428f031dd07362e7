"""Totals over the usage ledger, grouped by user, template, channel or model: images, GPU
time, cost here, cost per image and per approved image, approval rate, and the saving
against a cloud API's price per image. Pure: the entries come from ``bot.usage.state``.

Definitions (the README repeats them):

- *images*: images delivered (posted for review); images asked for but never delivered
  (left out as blank, in a failed or cancelled job) count as *failed*;
- *cost* = GPU seconds x ``gpu_hour_cost`` / 3600, the GPU seconds of every job, failed
  ones too (their time was spent); *cost per image* = cost / images;
  *cost per approved image* = cost / approved images;
- *approval rate* = approved / (approved + rejected): of the images decided, how many were
  approved; pending ones are not counted;
- *cloud cost* = images x ``cloud_price_per_image``; *saving* = cloud cost - cost.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from engine.ledger import LedgerEntry, UsageRecord
from engine.settings import Settings

GroupBy = Literal["user", "template", "channel", "model"]
GROUPS: tuple[GroupBy, ...] = get_args(GroupBy)
NONE = "(none)"


@dataclass(frozen=True)
class Rates:
    """What a GPU-hour costs here and an image costs in the cloud, in ``currency``."""

    gpu_hour_cost: float
    cloud_price_per_image: float
    currency: str = "$"

    @classmethod
    def from_settings(cls, settings: Settings) -> Rates:
        """The rates of ``PROOFROOM_GPU_HOUR_COST``, ``PROOFROOM_CLOUD_PRICE_PER_IMAGE``."""
        return cls(
            gpu_hour_cost=settings.gpu_hour_cost,
            cloud_price_per_image=settings.cloud_price_per_image,
            currency=settings.currency,
        )


@dataclass
class Totals:
    """Sums over some jobs of the ledger."""

    jobs: int = 0
    asked: int = 0
    images: int = 0
    approved: int = 0
    rejected: int = 0
    pending: int = 0
    failed: int = 0
    flagged: int = 0
    gpu_s: float = 0.0
    queue_wait_s: float = 0.0

    def add(self, entry: LedgerEntry) -> None:
        """Count one job."""
        record = entry.record
        self.jobs += 1
        self.asked += record.count
        self.images += record.images
        self.approved += entry.count("approved")
        self.rejected += entry.count("rejected")
        self.pending += entry.count("pending")
        self.failed += entry.count("failed")
        self.flagged += record.flagged
        self.gpu_s += record.gpu_s
        self.queue_wait_s += record.queue_wait_s

    def cost(self, rates: Rates) -> float:
        """What the GPU time cost here."""
        return self.gpu_s * rates.gpu_hour_cost / 3600

    def cost_per_image(self, rates: Rates) -> float | None:
        """Cost / images delivered; None without images."""
        return self.cost(rates) / self.images if self.images else None

    def cost_per_approved(self, rates: Rates) -> float | None:
        """Cost / images approved; None without approvals."""
        return self.cost(rates) / self.approved if self.approved else None

    @property
    def approval_rate(self) -> float | None:
        """Approved / decided; None when nothing was decided."""
        decided = self.approved + self.rejected
        return self.approved / decided if decided else None

    def cloud_cost(self, rates: Rates) -> float:
        """What the delivered images would have cost from the cloud API."""
        return self.images * rates.cloud_price_per_image

    def saving(self, rates: Rates) -> float:
        """Cloud cost minus cost here."""
        return self.cloud_cost(rates) - self.cost(rates)

    def values(self, rates: Rates) -> dict[str, Any]:
        """Every figure, as numbers (None where undefined): a CSV row, a JSON object."""
        return {
            "jobs": self.jobs,
            "images": self.images,
            "approved": self.approved,
            "rejected": self.rejected,
            "pending": self.pending,
            "failed": self.failed,
            "flagged": self.flagged,
            "gpu_seconds": round(self.gpu_s, 3),
            # Money to 12 significant digits, not to cents: self-hosted images cost
            # fractions of a cent.
            "cost": _tidy(self.cost(rates)),
            "cost_per_image": _tidy(self.cost_per_image(rates)),
            "cost_per_approved_image": _tidy(self.cost_per_approved(rates)),
            "approval_rate": None if self.approval_rate is None else round(self.approval_rate, 4),
            "cloud_cost": _tidy(self.cloud_cost(rates)),
            "saving": _tidy(self.saving(rates)),
            "avg_queue_wait_s": round(self.queue_wait_s / self.jobs, 2) if self.jobs else None,
        }


@dataclass
class Report:
    """Totals per group (most images first) and over all, for a range of time."""

    by: GroupBy
    start: float
    end: float
    rates: Rates
    rows: list[tuple[str, Totals]] = field(default_factory=list)
    total: Totals = field(default_factory=Totals)


def group_key(record: UsageRecord, by: GroupBy) -> str:
    """The group ``record`` counts in."""
    if by == "user":
        return record.user or NONE
    if by == "template":
        return record.template or NONE
    if by == "channel":
        return f"{record.platform}:{record.channel}" if record.channel else NONE
    return record.model


def build_report(
    entries: list[LedgerEntry], *, by: GroupBy, start: float, end: float, rates: Rates
) -> Report:
    """Sum ``entries`` per group of ``by`` and over all."""
    groups: dict[str, Totals] = {}
    total = Totals()
    for entry in entries:
        groups.setdefault(group_key(entry.record, by), Totals()).add(entry)
        total.add(entry)
    rows = sorted(groups.items(), key=lambda item: (-item[1].images, item[0]))
    return Report(by=by, start=start, end=end, rates=rates, rows=rows, total=total)


def as_json(report: Report) -> str:
    """The report as one JSON document."""
    return json.dumps(
        {
            "by": report.by,
            "start": report.start,
            "end": report.end,
            "currency": report.rates.currency,
            "gpu_hour_cost": report.rates.gpu_hour_cost,
            "cloud_price_per_image": report.rates.cloud_price_per_image,
            "groups": [
                {report.by: name, **totals.values(report.rates)} for name, totals in report.rows
            ],
            "total": report.total.values(report.rates),
        },
        indent=2,
    )


def as_csv(report: Report) -> str:
    """One row per group, then a row ``TOTAL``."""
    out = io.StringIO()
    columns = [report.by, *Totals().values(report.rates)]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for name, totals in [*report.rows, ("TOTAL", report.total)]:
        row = {report.by: name, **totals.values(report.rates)}
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def as_table(report: Report) -> str:
    """A plain-text table (monospace) of the main figures, with a total line."""
    money = money_format(report.rates.currency)
    header = [report.by, "images", "GPU time", "cost/image", "cost/approved", "approved", "saving"]
    lines = [header]
    for name, totals in [*report.rows, ("total", report.total)]:
        rate = totals.approval_rate
        lines.append(
            [
                name,
                str(totals.images),
                duration(totals.gpu_s),
                money(totals.cost_per_image(report.rates)),
                money(totals.cost_per_approved(report.rates)),
                "-" if rate is None else f"{rate:.0%}",
                money(totals.saving(report.rates)),
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in lines
    )


def duration(seconds: float) -> str:
    """``42.1s``, ``12m05s``, ``3h20m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def money_format(currency: str) -> Callable[[float | None], str]:
    """A formatter of amounts in ``currency``; ``-`` for an undefined one."""

    def shown(value: float | None) -> str:
        if value is None:
            return "-"
        # Self-hosted images cost fractions of a cent: enough digits to tell them apart.
        digits = 2 if abs(value) >= 1 else 4 if abs(value) >= 0.01 else 6
        return f"{currency}{value:,.{digits}f}"

    return shown


def _tidy(value: float | None) -> float | None:
    """``value`` without float noise (0.00019999999999999998 -> 0.0002)."""
    return None if value is None else float(f"{value:.12g}")
