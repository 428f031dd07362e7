"""The chart ``/imagine usage`` attaches: images per day, stacked approved, rejected and
pending, as a small PNG. The numbers come from :func:`chart_data` (what the tests check);
:func:`render_png` only draws them."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw

from bot.usage.periods import days_between
from engine.ledger import LedgerEntry

STACK = ("approved", "rejected", "pending")
COLOURS = {"approved": (46, 160, 67), "rejected": (207, 34, 46), "pending": (191, 191, 191)}
WIDTH, HEIGHT, MARGIN = 640, 320, 40


@dataclass(frozen=True)
class DayBar:
    """One day's delivered images by outcome."""

    day: date
    approved: int = 0
    rejected: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        """The bar's height."""
        return self.approved + self.rejected + self.pending


@dataclass(frozen=True)
class ChartData:
    """One bar per day of the range, in order, with a title."""

    title: str
    bars: tuple[DayBar, ...]


def chart_data(
    entries: list[LedgerEntry], *, start: datetime, end: datetime, zone: ZoneInfo, title: str
) -> ChartData:
    """Each day's images (by the day their job ended in ``zone``), split by outcome; failed
    images were never delivered and are not drawn."""
    counts = {day: dict.fromkeys(STACK, 0) for day in days_between(start, end, zone=zone)}
    for entry in entries:
        day = datetime.fromtimestamp(entry.record.ended_at, zone).date()
        if day not in counts:
            continue
        for outcome in STACK:
            counts[day][outcome] += entry.count(outcome)  # type: ignore[arg-type]
    return ChartData(
        title=title, bars=tuple(DayBar(day=day, **values) for day, values in counts.items())
    )


def render_png(data: ChartData) -> bytes:
    """A bar chart of ``data`` with a legend; Pillow's own font, nothing to install."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 10), data.title, fill="black")
    x = WIDTH - MARGIN - 3 * 90
    for outcome in STACK:
        draw.rectangle((x, 12, x + 10, 22), fill=COLOURS[outcome])
        draw.text((x + 14, 10), outcome, fill="black")
        x += 90
    top, bottom = MARGIN, HEIGHT - MARGIN
    left, right = MARGIN, WIDTH - MARGIN // 2
    draw.line((left, bottom, right, bottom), fill="black")
    peak = max((bar.total for bar in data.bars), default=0) or 1
    draw.text((4, top - 6), str(peak), fill="black")
    draw.text((4, bottom - 6), "0", fill="black")
    slot = (right - left) / max(len(data.bars), 1)
    for n, bar in enumerate(data.bars):
        x0 = left + n * slot + slot * 0.15
        x1 = left + (n + 1) * slot - slot * 0.15
        y = float(bottom)
        for outcome in STACK:
            height = getattr(bar, outcome) / peak * (bottom - top)
            if height:
                draw.rectangle((x0, y - height, x1, y), fill=COLOURS[outcome])
            y -= height
        if len(data.bars) <= 16 or n % max(1, len(data.bars) // 8) == 0:
            draw.text((x0, bottom + 6), bar.day.strftime("%m-%d"), fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
