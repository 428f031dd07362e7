"""The quota settings (``PROOFROOM_QUOTAS__*``) and the day they are counted in.

A limit that is not set is no limit. Days begin at midnight in ``PROOFROOM_TIMEZONE`` (the
bot's time zone, shared with the usage ledger's weeks and months), so "today" is the day the
team sees on its clocks, not UTC's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator


class Quotas(BaseModel):
    """Per-user limits; ``None`` (unset) means unlimited. Admins are exempt from all."""

    # Images of interactive jobs (/imagine) a user may queue per day.
    images_per_day: int | None = Field(default=None, ge=0)
    # Images of bulk jobs (CSV batches and their retries) per user and day; a content
    # calendar counts as its own user, "calendar".
    bulk_images_per_day: int | None = Field(default=None, ge=0)
    # Interactive jobs of one user waiting or rendering at once.
    concurrent_jobs: int | None = Field(default=None, ge=1)
    # Interactive jobs of one user waiting in line (not yet rendering).
    queued_interactive_jobs: int | None = Field(default=None, ge=1)
    # Commands of one user per minute (every /imagine, including help and status).
    commands_per_minute: int | None = Field(default=None, ge=1)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # PROOFROOM_QUOTAS__IMAGES_PER_DAY= in a .env: no limit, as when the line is absent.
        if isinstance(value, str) and not value.strip():
            return None
        return value


@dataclass(frozen=True)
class Day:
    """One local day: its key (``2026-12-03``) and the moment the next one begins."""

    key: str
    ends: datetime  # aware, in the configured zone

    def seconds_left(self, now: datetime) -> float:
        """Seconds from ``now`` until this day ends (both compared in UTC, so DST is right)."""
        return (self.ends.astimezone(UTC) - now.astimezone(UTC)).total_seconds()


def day_of(now: datetime, zone: ZoneInfo) -> Day:
    """The local day in ``zone`` that ``now`` (aware) falls on."""
    local = now.astimezone(zone).date()
    return Day(
        key=local.isoformat(), ends=datetime.combine(local + timedelta(days=1), time(), zone)
    )
