"""Runs content calendars on time, exactly once per calendar and week.

Once-ness lives in Redis (``SET NX`` on a key per calendar and ISO week, in
``bot.calendars.state``), so a restart, two bot processes, or a double trigger post a week
once. A run missed while the bot was down is posted on the next tick, within the calendar's
catch-up window. The clock is injected so tests can freeze time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.calendars.model import Calendar, WeekRun, run_for
from bot.calendars.state import CalendarState
from engine.errors import UserError

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class CalendarScheduler:
    """Fires calendar runs and digests; call :meth:`tick` every minute or so."""

    def __init__(
        self,
        *,
        calendars: dict[str, Calendar],
        state: CalendarState,
        post_week: Callable[[WeekRun], bool | None],
        post_digest: Callable[[WeekRun], bool | None] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.calendars = calendars
        self.state = state
        self.post_week = post_week
        self.post_digest = post_digest
        self.clock = clock

    def tick(self) -> list[str]:
        """Post every run (and digest) that is due and not yet posted; return what was posted."""
        now = self.clock()
        posted = []
        for calendar in self.calendars.values():
            run = self.due_run(calendar, now=now)
            if run is not None and self._once(f"week:{run.key}", calendar, run, self.post_week):
                posted.append(f"{calendar.name} {run.key}")
            digest = self.due_digest(calendar, now=now)
            if (
                digest is not None
                and self.post_digest is not None
                and self._once(f"digest:{digest.key}", calendar, digest, self.post_digest)
            ):
                posted.append(f"{calendar.name} {digest.key} digest")
        return posted

    def due_run(self, calendar: Calendar, *, now: datetime) -> WeekRun | None:
        """The latest scheduled run at or before ``now`` if it is inside the catch-up window."""
        due = calendar.cron.last_at_or_before(now)
        if now - due > timedelta(hours=calendar.catch_up_hours):
            return None
        return run_for(calendar, due)

    def due_digest(self, calendar: Calendar, *, now: datetime) -> WeekRun | None:
        """The week whose digest is due at or before ``now`` (same catch-up window)."""
        cron = calendar.digest_cron
        if cron is None:
            return None
        due = cron.last_at_or_before(now)
        if now - due > timedelta(hours=calendar.catch_up_hours):
            return None
        week_start = calendar.cron.last_at_or_before(due)
        return run_for(calendar, week_start)

    def next_runs(self, *, count: int = 3) -> list[WeekRun]:
        """The next ``count`` runs of every calendar, soonest first (for ``/imagine calendar``)."""
        now = self.clock()
        runs = []
        for calendar in self.calendars.values():
            moment = now
            for _ in range(count):
                moment = calendar.cron.next_after(moment)
                run = run_for(calendar, moment)
                if run is not None:
                    runs.append(run)
        return sorted(runs, key=lambda r: r.due)[: count * max(1, len(self.calendars))]

    def is_posted(self, calendar: str, week_key: str) -> bool:
        """Whether that calendar's week was posted."""
        return self.state.is_done(calendar, f"week:{week_key}")

    def _once(
        self, what: str, calendar: Calendar, run: WeekRun, action: Callable[[WeekRun], bool | None]
    ) -> bool:
        if not self.state.claim(calendar.name, what):
            return False
        try:
            posted = action(run)
        except UserError as exc:  # e.g. no worker renders its model (bot.jobs.routing)
            self.state.release(calendar.name, what)
            log.warning(
                "calendar %s %s not posted: %s; will retry on the next tick",
                calendar.name,
                what,
                exc.message,
            )
            return False
        except Exception:
            # Release the claim so the next tick tries again instead of losing the week.
            self.state.release(calendar.name, what)
            log.exception("calendar %s %s failed; will retry on the next tick", calendar.name, what)
            return False
        self.state.mark_done(calendar.name, what)
        if posted is False:  # nothing to post (a digest of a week never posted here)
            return False
        log.info("calendar %s: posted %s", calendar.name, what)
        return True
