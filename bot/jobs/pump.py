"""The bot's event loop: job events from the worker into their threads.

:meth:`EventPump.pump` reads a batch of events from this platform's consumer group, shows
each in its thread (``bot.jobs.delivery``) and acknowledges it. A progress event followed by
a later event of the same job in the same batch is skipped: one edit, not several. An event
that could not be shown (a chat API failing for a while) stays unacknowledged and is read
again after a pause that doubles each time, before it is given up: a progress event after a
few tries (a later one replaces it), the end of a job (its images, its failure sentence)
only after minutes of outage. What was posted is recorded, so nothing is posted twice.

Redis outages: :meth:`EventPump.run_until` logs one line when Redis goes away and one when
it is back (``engine.outage``), waits with backoff meanwhile, then reads again the events it
had in hand and looks for jobs Redis lost (``bot.jobs.followed``): their threads are told.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bot.jobs.delivery import Delivery
from bot.jobs.followed import FollowedJobs
from engine.errors import UserError
from engine.events import EventStream, JobEvent
from engine.outage import CONNECTION_ERRORS, Outage

log = logging.getLogger(__name__)

# A chat API can fail for a while (rate limits, an outage): an event that could not be shown
# is read again after a pause (0.5 s, 1 s, 2 s ... at most RETRY_MAX_S) before it is given
# up: a progress event after a few tries, the end of a job after about three minutes.
MAX_DELIVERY_ATTEMPTS = 5
MAX_TERMINAL_ATTEMPTS = 12
RETRY_BASE_S = 0.5
RETRY_MAX_S = 30.0
# While Redis is away the event loop tries again after 0.5 s, 1 s, 2 s ... at most this long.
OUTAGE_MAX_WAIT_S = 2.0


class EventPump:
    """Reads job events and hands them to ``delivery``; see the module docstring."""

    def __init__(
        self,
        *,
        events: EventStream,
        delivery: Delivery,
        followed: FollowedJobs,
        outage: Outage,
        group: str,
        consumer: str,
        before_read: Callable[[], object] = lambda: None,
    ) -> None:
        self.events = events
        self.delivery = delivery
        self.followed = followed
        self.outage = outage
        self.group = group
        self.consumer = consumer
        # Work that rides on the loop, so every adapter runs it without code of its own
        # (the calendar schedules).
        self.before_read = before_read
        self._attempts: dict[str, int] = {}
        self._retry_at: float | None = None

    def run_until(self, stop: threading.Event, *, block_ms: int = 1000) -> None:
        """:meth:`pump` until ``stop`` is set (checked after each read of up to
        ``block_ms``): every runner's event loop. Redis away: one line when it goes, one
        when it is back, tries with backoff between; after it, the events in hand are read
        again and lost jobs are told (``bot.jobs.followed``). Any other failure is logged
        and tried again after a second, without spinning and without ending the loop."""
        failures = 0
        while not stop.is_set():
            try:
                self.pump(block_ms=block_ms)
                if failures:
                    self.outage.recovered(reconnected=True)
                    # A read in flight when Redis went may have been recorded but never
                    # answered: read this consumer's pending entries again.
                    self.events.replay(group=self.group, consumer=self.consumer)
                self.followed.watch(after_outage=failures > 0)
                failures = 0
            except CONNECTION_ERRORS as exc:
                failures += 1
                self.outage.failed(exc)
                stop.wait(min(OUTAGE_MAX_WAIT_S, RETRY_BASE_S * 2 ** min(failures - 1, 8)))
            except Exception:
                log.exception("event pump failed; retrying in 1 s")
                stop.wait(1.0)

    def pump(self, *, block_ms: int = 1000, count: int = 100) -> int:
        """Read job events (waiting up to ``block_ms``), show them in their threads, ack
        them; return how many were read. Call in a loop. ``before_read`` runs first (the
        calendar schedules, every 30 s)."""
        try:
            self.before_read()
        except CONNECTION_ERRORS:
            raise  # Redis away: the event loop waits for it (one log line, not one per tick)
        except Exception:
            log.exception("calendar tick failed; will try again")
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            # The unacknowledged entries (those that failed) are read again first.
            self._retry_at = None
            self.events.replay(group=self.group, consumer=self.consumer)
        batch = self.events.read(
            group=self.group, consumer=self.consumer, count=count, block_ms=block_ms
        )
        for position, (entry_id, event) in enumerate(batch):
            if not event.terminal and _superseded(event, batch[position + 1 :]):
                self.events.ack(group=self.group, entry_id=entry_id)
                continue  # a later event of the same job is in hand: one edit, not several
            if self._show(entry_id, event):
                self._attempts.pop(entry_id, None)
                self.events.ack(group=self.group, entry_id=entry_id)
        return len(batch)

    def _show(self, entry_id: str, event: JobEvent) -> bool:
        """Show one event; False when it is to be read again later (left unacknowledged)."""
        try:
            self.delivery.handle(event)
        except UserError as exc:
            log.warning("job %s: %s; event dropped", event.job_id, exc.message)
        except CONNECTION_ERRORS:
            raise  # not the event's fault: it stays pending and is read again after
        except Exception:
            # Left unacknowledged and read again later (or after a restart); what was
            # posted is recorded, so nothing is posted twice.
            attempts = self._attempts[entry_id] = self._attempts.get(entry_id, 0) + 1
            most = MAX_TERMINAL_ATTEMPTS if event.terminal else MAX_DELIVERY_ATTEMPTS
            log.exception(
                "job %s: could not show %s event (attempt %d of %d)",
                event.job_id,
                event.kind,
                attempts,
                most,
            )
            if attempts < most:
                delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempts - 1))
                retry_at = time.monotonic() + delay
                self._retry_at = min(self._retry_at or retry_at, retry_at)
                return False
            log.error(
                "job %s: giving up on its %s event (a finished job's images are kept: "
                "`/imagine repost %s` posts them)",
                event.job_id,
                event.kind,
                event.job_id,
            )
        return True


def _superseded(event: JobEvent, later: list[tuple[str, JobEvent]]) -> bool:
    return any(other.job_id == event.job_id for _, other in later)
